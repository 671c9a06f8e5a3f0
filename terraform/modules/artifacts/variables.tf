variable "name" {
  description = "Name prefix (the cluster name)."
  type        = string
}

variable "images" {
  description = "Images with an ECR repository <name>/<image> (make release pushes them)."
  type        = list(string)
  default     = ["controlplane", "syncer"]
}

variable "backup_retention_days" {
  description = "Days Raft snapshots are kept in the backups bucket."
  type        = number
  default     = 30
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
