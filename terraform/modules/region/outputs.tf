output "api_url" {
  description = "The region's API URL (SDKs' OPENSANDBOX_API_URL)."
  value       = module.dns.api_url
}

output "api_dns_name" {
  description = "DNS name of the API load balancer (api_url is an alias of it)."
  value       = module.api_lb.dns_name
}

output "preview_domain" {
  description = "Preview URLs are https://<port>-<sandboxID>.<preview_domain>."
  value       = module.dns.preview_domain
}

output "worker_domain" {
  description = "Workers are <instance id>.<worker_domain> (public zone: their public address; private zone: their VPC address)."
  value       = module.dns.worker_domain
}

output "zone_ids" {
  description = "Route 53 zone IDs: the parent zone and the workers' public and private zones."
  value       = module.dns.zone_ids
}

output "ssm_prefix" {
  description = "SSM path of the bootstrap secrets (common/, control/, worker/, operator/); scripts/bootstrap-region.sh writes them."
  value       = local.ssm_prefix
}

output "release_bucket" {
  description = "This region's release bucket (the Nomad jobs' release_bucket)."
  value       = module.artifacts.releases_bucket
}

output "registry" {
  description = "ECR prefix of this region's images (<registry>/controlplane, <registry>/syncer)."
  value       = module.artifacts.registry
}

output "release_target" {
  description = "This region as `make release` takes it in RELEASE_TARGETS."
  value       = "${var.region}=${module.artifacts.releases_bucket},${module.artifacts.registry}"
}

output "backups_bucket" {
  description = "Bucket of the Nomad and Consul Raft snapshots (snapshots/<nomad|consul>/...)."
  value       = module.artifacts.backups_bucket
}

output "workers_asg_name" {
  description = "Autoscaling group of the workers."
  value       = module.workers.autoscaling_group_name
}

output "control_asg_name" {
  description = "Autoscaling group of the control group."
  value       = module.control.autoscaling_group_name
}

output "operator_tunnels" {
  description = "Commands that forward the operator UIs to this machine through SSM (no open ports): Nomad https://localhost:4646, Consul http://localhost:8500, Grafana http://localhost:3000."
  # Nomad and Consul answer on every control host's loopback; Grafana runs
  # on one of them, found by its Consul name from the host the session lands on.
  value = {
    for name, params in {
      nomad   = "--document-name AWS-StartPortForwardingSession --parameters portNumber=4646,localPortNumber=4646"
      consul  = "--document-name AWS-StartPortForwardingSession --parameters portNumber=8500,localPortNumber=8500"
      grafana = "--document-name AWS-StartPortForwardingSessionToRemoteHost --parameters host=grafana.service.consul,portNumber=3000,localPortNumber=3000"
      } : name => join(" ", [
        "aws ssm start-session --region ${var.region}",
        "--target $(aws ec2 describe-instances --region ${var.region} --filters Name=tag:Cluster,Values=${var.cluster} Name=tag:opensandbox-role,Values=control Name=instance-state-name,Values=running --query 'Reservations[0].Instances[0].InstanceId' --output text)",
        params,
    ])
  }
}

output "database_endpoint" {
  description = "PostgreSQL host:port (null without enable_rds)."
  value       = var.enable_rds ? module.database[0].endpoint : null
}

output "database_secret_arn" {
  description = "Secrets Manager secret with the generated master password (null without enable_rds)."
  value       = var.enable_rds ? module.database[0].master_user_secret_arn : null
}
