output "dns_name" {
  description = "DNS name of the API load balancer (point api.<region>.<your domain> at it)."
  value       = aws_lb.api.dns_name
}

output "zone_id" {
  description = "Route 53 zone ID of the load balancer, for alias records."
  value       = aws_lb.api.zone_id
}

output "target_group_arn" {
  description = "Target group the control-group autoscaling group registers into."
  value       = aws_lb_target_group.controlplane.arn
}
