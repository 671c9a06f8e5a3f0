# Per-region storage of what the region runs and keeps: the release bucket
# (tarballs the Nomad jobs download, by their SHA-256), the ECR repositories
# of the control plane's and the syncer's images (pinned by digest), and the
# bucket of the Nomad and Consul Raft snapshots. Each region has its own, so
# a region never depends on another one's storage (or its outage).

data "aws_caller_identity" "current" {}

locals {
  # Account id in the names: bucket names are global.
  releases_bucket = "${var.name}-releases-${data.aws_caller_identity.current.account_id}"
  backups_bucket  = "${var.name}-backups-${data.aws_caller_identity.current.account_id}"
  buckets         = { releases = local.releases_bucket, backups = local.backups_bucket }
}

resource "aws_s3_bucket" "this" {
  for_each = local.buckets

  bucket = each.value
  tags   = var.tags
}

resource "aws_s3_bucket_public_access_block" "this" {
  for_each = local.buckets

  bucket                  = aws_s3_bucket.this[each.key].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "this" {
  for_each = local.buckets

  bucket = aws_s3_bucket.this[each.key].id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  for_each = local.buckets

  bucket = aws_s3_bucket.this[each.key].id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "aws:kms"
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_versioning" "this" {
  for_each = local.buckets

  bucket = aws_s3_bucket.this[each.key].id
  versioning_configuration {
    status = "Enabled"
  }
}

# Snapshots are kept var.backup_retention_days; releases stay until removed.
resource "aws_s3_bucket_lifecycle_configuration" "backups" {
  bucket = aws_s3_bucket.this["backups"].id

  rule {
    id     = "expire-snapshots"
    status = "Enabled"
    filter {}
    expiration {
      days = var.backup_retention_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
  }
}

resource "aws_ecr_repository" "this" {
  for_each = toset(var.images)

  name                 = "${var.name}/${each.value}"
  image_tag_mutability = "IMMUTABLE" # a version tag never moves; jobs pin digests anyway
  force_delete         = false
  tags                 = var.tags

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
  }
}
