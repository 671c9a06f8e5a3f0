output "api_dns_name" {
  description = "DNS name of the API load balancer."
  value       = module.api_lb.dns_name
}

output "api_zone_id" {
  description = "Route 53 zone ID of the API load balancer (alias records)."
  value       = module.api_lb.zone_id
}

output "ssm_prefix" {
  description = "SSM path where the bootstrap secrets must exist before hosts boot."
  value       = local.ssm_prefix
}

output "workers_asg_name" {
  description = "Autoscaling group of the workers."
  value       = module.workers.autoscaling_group_name
}

output "control_asg_name" {
  description = "Autoscaling group of the control group."
  value       = module.control.autoscaling_group_name
}

output "database_endpoint" {
  description = "PostgreSQL host:port (null without enable_rds)."
  value       = var.enable_rds ? module.database[0].endpoint : null
}

output "database_secret_arn" {
  description = "Secrets Manager secret with the generated master password (null without enable_rds)."
  value       = var.enable_rds ? module.database[0].master_user_secret_arn : null
}
