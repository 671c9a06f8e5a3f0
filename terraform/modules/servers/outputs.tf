output "autoscaling_group_name" {
  description = "Name of the control group's autoscaling group."
  value       = aws_autoscaling_group.control.name
}
