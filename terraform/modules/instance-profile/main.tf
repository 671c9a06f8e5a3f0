# Instance role for OpenSandbox hosts, kept to what the hosts do:
#   - read their bootstrap secrets: the cluster's common SSM path and their
#     own role's path only (a worker never reads the control group's server
#     keys or snapshot tokens; a control host never reads the drain token),
#   - download release tarballs (Nomad artifact stanza, one S3 prefix),
#   - find Consul servers by tag (cloud auto-join needs DescribeInstances),
#   - be reachable through SSM Session Manager (no SSH keys, no port 22).

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  ssm_arns = [for p in var.ssm_paths : "arn:${data.aws_partition.current.partition}:ssm:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:parameter${p}"]
}

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "node" {
  statement {
    sid       = "BootstrapSecrets"
    actions   = ["ssm:GetParametersByPath", "ssm:GetParameters", "ssm:GetParameter"]
    resources = concat(local.ssm_arns, [for a in local.ssm_arns : "${a}/*"])
  }

  statement {
    sid       = "ReleaseArtifacts"
    actions   = ["s3:GetObject"]
    resources = ["arn:${data.aws_partition.current.partition}:s3:::${var.release_bucket}/releases/*"]
  }

  statement {
    sid       = "ConsulAutoJoin"
    actions   = ["ec2:DescribeInstances"]
    resources = ["*"] # DescribeInstances supports no resource-level scoping
  }

  dynamic "statement" {
    for_each = var.extra_statements
    content {
      sid       = statement.value.sid
      actions   = statement.value.actions
      resources = statement.value.resources
    }
  }
}

resource "aws_iam_role" "this" {
  name               = var.name
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "node" {
  name   = "opensandbox-node"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.node.json
}

resource "aws_iam_role_policy_attachment" "ssm_core" {
  role       = aws_iam_role.this.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "this" {
  name = var.name
  role = aws_iam_role.this.name
  tags = var.tags
}
