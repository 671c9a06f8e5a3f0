output "api_url" {
  description = "The region's API URL (SDKs' OPENSANDBOX_API_URL)."
  value       = "https://${local.api_name}"
}

output "certificate_arn" {
  description = "Validated ACM certificate for the API name and the preview wildcard (the load balancer's TLS listener)."
  value       = aws_acm_certificate_validation.api.certificate_arn
}

output "preview_domain" {
  description = "Preview URLs are https://<port>-<sandboxID>.<preview_domain>."
  value       = local.preview_domain
}

output "worker_domain" {
  description = "Workers are named <instance id>.<worker_domain>."
  value       = local.worker_domain
}

output "worker_public_zone_id" {
  description = "Public zone of the workers' names (their public addresses, ACME DNS-01 challenges)."
  value       = aws_route53_zone.workers_public.zone_id
}

output "worker_private_zone_id" {
  description = "Private zone of the workers' names (their VPC addresses)."
  value       = aws_route53_zone.workers_private.zone_id
}

output "zone_ids" {
  description = "Route 53 zone IDs: the parent, the workers' public and private zones."
  value = {
    parent          = var.zone_id
    workers_public  = aws_route53_zone.workers_public.zone_id
    workers_private = aws_route53_zone.workers_private.zone_id
  }
}
