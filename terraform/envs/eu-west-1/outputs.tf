output "region" {
  description = "Everything an operator needs next: API DNS name, SSM path, autoscaling groups, database endpoint and secret."
  value = {
    api_dns_name        = module.region.api_dns_name
    ssm_prefix          = module.region.ssm_prefix
    workers_asg_name    = module.region.workers_asg_name
    control_asg_name    = module.region.control_asg_name
    database_endpoint   = module.region.database_endpoint
    database_secret_arn = module.region.database_secret_arn
  }
}
