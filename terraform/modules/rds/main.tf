# PostgreSQL for API keys, quotas, sessions and the event history. The master
# password is generated and kept by RDS in Secrets Manager
# (manage_master_user_password): it is never in Terraform state or in this
# repository. Operators build DATABASE_URL from that secret and store it as a
# Nomad variable (docs/deploy.md).

resource "aws_db_subnet_group" "this" {
  name       = "${var.name}-pg"
  subnet_ids = var.subnet_ids
  tags       = var.tags
}

resource "aws_db_parameter_group" "this" {
  name   = "${var.name}-pg${var.engine_version}"
  family = "postgres${var.engine_version}"
  tags   = var.tags

  # Reject clear-text connections: DATABASE_URL must use sslmode=require or stricter.
  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }
}

resource "aws_db_instance" "this" {
  identifier     = "${var.name}-pg"
  engine         = "postgres"
  engine_version = var.engine_version
  instance_class = var.instance_class

  db_name                     = "opensandbox"
  username                    = "opensandbox"
  manage_master_user_password = true

  allocated_storage     = var.allocated_storage_gb
  max_allocated_storage = var.max_allocated_storage_gb
  storage_type          = "gp3"
  storage_encrypted     = true

  db_subnet_group_name   = aws_db_subnet_group.this.name
  parameter_group_name   = aws_db_parameter_group.this.name
  vpc_security_group_ids = [var.security_group_id]
  publicly_accessible    = false
  multi_az               = var.multi_az

  backup_retention_period    = var.backup_retention_days
  deletion_protection        = var.deletion_protection
  skip_final_snapshot        = false
  final_snapshot_identifier  = "${var.name}-pg-final"
  auto_minor_version_upgrade = true
  apply_immediately          = false

  performance_insights_enabled = true

  tags = var.tags
}
