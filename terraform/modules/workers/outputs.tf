output "autoscaling_group_name" {
  description = "Name of the workers' autoscaling group (scale the fleet with it)."
  value       = aws_autoscaling_group.workers.name
}

output "autoscaling_group_arn" {
  description = "ARN of the workers' autoscaling group."
  value       = aws_autoscaling_group.workers.arn
}

output "drain_hook_name" {
  description = "Name of the termination lifecycle hook the hosts complete after draining."
  value       = local.hook_name
}
