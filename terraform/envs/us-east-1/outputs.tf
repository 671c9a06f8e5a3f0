output "region" {
  description = "Everything an operator needs next: API URL, DNS zones, SSM path, release bucket and registry, operator tunnels, autoscaling groups, database endpoint and secret."
  value = {
    api_url             = module.region.api_url
    preview_domain      = module.region.preview_domain
    worker_domain       = module.region.worker_domain
    zone_ids            = module.region.zone_ids
    ssm_prefix          = module.region.ssm_prefix
    release_bucket      = module.region.release_bucket
    registry            = module.region.registry
    backups_bucket      = module.region.backups_bucket
    operator_tunnels    = module.region.operator_tunnels
    workers_asg_name    = module.region.workers_asg_name
    control_asg_name    = module.region.control_asg_name
    database_endpoint   = module.region.database_endpoint
    database_secret_arn = module.region.database_secret_arn
  }
}

output "release_target" {
  description = "This region for make release: RELEASE_TARGETS=\"$(terraform output -raw release_target) ...\"."
  value       = module.region.release_target
}
