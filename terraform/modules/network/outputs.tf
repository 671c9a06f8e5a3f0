output "vpc_id" {
  description = "ID of the region's VPC."
  value       = aws_vpc.this.id
}

output "public_subnet_ids" {
  description = "Public subnets, one per AZ (load balancer, workers)."
  value       = aws_subnet.public[*].id
}

output "private_subnet_ids" {
  description = "Private subnets, one per AZ (control group, PostgreSQL)."
  value       = aws_subnet.private[*].id
}

output "security_group_ids" {
  description = "Security group IDs by role: lb, control, workers, database."
  value = {
    lb       = aws_security_group.lb.id
    control  = aws_security_group.control.id
    workers  = aws_security_group.workers.id
    database = aws_security_group.database.id
  }
}
