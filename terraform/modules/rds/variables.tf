variable "name" {
  description = "Identifier prefix of the database instance."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets for the DB subnet group (at least two AZs)."
  type        = list(string)
}

variable "security_group_id" {
  description = "Security group of the database (from the network module; admits the control group only)."
  type        = string
}

variable "engine_version" {
  description = "PostgreSQL major version. The schema needs 14 or newer; the project tests against 15 and 16."
  type        = string
  default     = "16"
}

variable "instance_class" {
  description = "RDS instance class."
  type        = string
  default     = "db.m6g.large"
}

variable "allocated_storage_gb" {
  description = "Initial storage (GiB); storage autoscaling grows it up to max_allocated_storage_gb."
  type        = number
  default     = 100
}

variable "max_allocated_storage_gb" {
  description = "Upper bound of storage autoscaling (GiB)."
  type        = number
  default     = 1000
}

variable "multi_az" {
  description = "Run a synchronous standby in another AZ."
  type        = bool
  default     = true
}

variable "backup_retention_days" {
  description = "Days of automated backups (point-in-time recovery window)."
  type        = number
  default     = 7
}

variable "deletion_protection" {
  description = "Refuse to delete the instance (turn off deliberately before destroying a region)."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
