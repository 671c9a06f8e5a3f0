output "endpoint" {
  description = "host:port of the PostgreSQL instance."
  value       = aws_db_instance.this.endpoint
}

output "master_user_secret_arn" {
  description = "Secrets Manager secret holding the generated master password (read it to build DATABASE_URL)."
  value       = aws_db_instance.this.master_user_secret[0].secret_arn
}
