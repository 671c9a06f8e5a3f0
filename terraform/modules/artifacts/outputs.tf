output "releases_bucket" {
  description = "Bucket of the release tarballs (releases/<version>/); the Nomad jobs' release_bucket."
  value       = aws_s3_bucket.this["releases"].id
}

output "backups_bucket" {
  description = "Bucket of the Nomad and Consul Raft snapshots."
  value       = aws_s3_bucket.this["backups"].id
}

output "registry" {
  description = "ECR registry prefix of the images: <account>.dkr.ecr.<region>.amazonaws.com/<name>."
  value       = trimsuffix(aws_ecr_repository.this[var.images[0]].repository_url, "/${var.images[0]}")
}

output "repository_arns" {
  description = "ARNs of the image repositories, by image."
  value       = { for k, r in aws_ecr_repository.this : k => r.arn }
}
