# One OpenSandbox region: network, API load balancer with its DNS name and
# certificate, the workers' DNS zones, release/backup storage and image
# repositories, control group, worker fleet and (optionally) PostgreSQL.
# Each envs/<region> root instantiates it once with its own provider region
# and state.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  ssm_prefix = "/opensandbox/${var.cluster}"
  tags       = merge(var.tags, { Project = "opensandbox", Cluster = var.cluster })
  arn        = "arn:${data.aws_partition.current.partition}"

  # The workers module names its group "<cluster>-workers"; the drain
  # permission and the watcher's settings need the name before it exists.
  workers_asg     = "${var.cluster}-workers"
  drain_hook      = "drain"
  workers_asg_arn = "${local.arn}:autoscaling:${var.region}:${data.aws_caller_identity.current.account_id}:autoScalingGroup:*:autoScalingGroupName/${local.workers_asg}"
  worker_zones    = [module.dns.worker_public_zone_id, module.dns.worker_private_zone_id]

  # What differs between the two node roles. Each reads the SSM parameters
  # under <prefix>/common and its own <prefix>/<role> (scripts/bootstrap-region.sh
  # writes them), nothing else.
  roles = {
    control = {
      extra_vars = {
        opensandbox_backups_bucket = module.artifacts.backups_bucket
        opensandbox_registry       = module.artifacts.registry
      }
      extra_statements = [
        {
          sid       = "RaftSnapshots"
          actions   = ["s3:PutObject"]
          resources = ["${local.arn}:s3:::${module.artifacts.backups_bucket}/snapshots/*"]
        },
        {
          sid       = "PullImages"
          actions   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
          resources = values(module.artifacts.repository_arns)
        },
        {
          sid       = "RegistryLogin"
          actions   = ["ecr:GetAuthorizationToken"]
          resources = ["*"] # GetAuthorizationToken has no resource-level scoping
        },
      ]
    }
    worker = {
      extra_vars = {
        worker_drain_asg             = local.workers_asg
        worker_drain_hook            = local.drain_hook
        worker_domain                = module.dns.worker_domain
        worker_public_zone_id        = module.dns.worker_public_zone_id
        worker_private_zone_id       = module.dns.worker_private_zone_id
        worker_acme_email            = var.acme_email
        worker_acme_directory        = var.acme_directory
        opensandbox_worker_public_ip = tostring(var.worker_public_ip)
      }
      extra_statements = [
        {
          sid       = "CompleteOwnDrain"
          actions   = ["autoscaling:CompleteLifecycleAction"]
          resources = [local.workers_asg_arn]
        },
        {
          # A worker writes its own name (A) and its ACME challenge (TXT)
          # in the workers' zones, nothing outside them.
          sid       = "WorkerNames"
          actions   = ["route53:ChangeResourceRecordSets", "route53:ListResourceRecordSets", "route53:GetHostedZone"]
          resources = [for z in local.worker_zones : "${local.arn}:route53:::hostedzone/${z}"]
        },
        {
          sid       = "WorkerNameChanges"
          actions   = ["route53:GetChange", "route53:ListHostedZonesByName"]
          resources = ["*"] # change ids are not known in advance
        },
      ]
    }
  }
}

module "network" {
  source = "../network"

  name               = var.cluster
  vpc_cidr           = var.vpc_cidr
  single_nat_gateway = var.single_nat_gateway
  client_cidrs       = var.client_cidrs
  api_client_cidrs   = var.api_client_cidrs
  admin_cidrs        = var.admin_cidrs
  tags               = local.tags
}

module "api_lb" {
  source = "../api-lb"

  name              = var.cluster
  vpc_id            = module.network.vpc_id
  subnet_ids        = module.network.public_subnet_ids
  security_group_id = module.network.security_group_ids.lb
  certificate_arn   = module.dns.certificate_arn
  tags              = local.tags
}

module "dns" {
  source = "../dns"

  domain      = var.domain
  zone_id     = var.zone_id
  region      = var.region
  vpc_id      = module.network.vpc_id
  lb_dns_name = module.api_lb.dns_name
  lb_zone_id  = module.api_lb.zone_id
  tags        = local.tags
}

module "artifacts" {
  source = "../artifacts"

  name = var.cluster
  tags = local.tags
}

module "profile" {
  source   = "../instance-profile"
  for_each = local.roles

  name             = "${var.cluster}-${each.key}"
  ssm_paths        = ["${local.ssm_prefix}/common", "${local.ssm_prefix}/${each.key}"]
  release_bucket   = module.artifacts.releases_bucket
  extra_statements = each.value.extra_statements
  tags             = local.tags
}

module "bootstrap" {
  source   = "../bootstrap"
  for_each = local.roles

  role             = each.key
  cluster          = var.cluster
  region           = var.region
  ansible_repo_url = var.ansible_repo_url
  ansible_repo_ref = var.ansible_repo_ref
  ssm_prefix       = local.ssm_prefix
  expected_servers = var.control_count
  extra_vars       = each.value.extra_vars
}

module "control" {
  source = "../servers"

  name                  = var.cluster
  server_count          = var.control_count
  instance_type         = var.control_instance_type
  ami_id                = var.ami_id
  subnet_ids            = module.network.private_subnet_ids
  security_group_id     = module.network.security_group_ids.control
  target_group_arns     = [module.api_lb.target_group_arn]
  user_data             = module.bootstrap["control"].user_data
  instance_profile_name = module.profile["control"].instance_profile_name
  tags                  = local.tags
}

module "workers" {
  source = "../workers"

  name                  = var.cluster
  instance_type         = var.worker_instance_type
  ami_id                = coalesce(var.worker_ami_id, var.ami_id)
  min_size              = var.worker_min
  max_size              = var.worker_max
  desired_capacity      = var.worker_desired
  public_ip             = var.worker_public_ip
  subnet_ids            = var.worker_public_ip ? module.network.public_subnet_ids : module.network.private_subnet_ids
  security_group_id     = module.network.security_group_ids.workers
  user_data             = module.bootstrap["worker"].user_data
  instance_profile_name = module.profile["worker"].instance_profile_name
  drain_hook_name       = local.drain_hook
  tags                  = local.tags
}

module "database" {
  source = "../rds"
  count  = var.enable_rds ? 1 : 0

  name              = var.cluster
  subnet_ids        = module.network.private_subnet_ids
  security_group_id = module.network.security_group_ids.database
  instance_class    = var.rds_instance_class
  multi_az          = var.rds_multi_az
  tags              = local.tags
}
