variable "name" {
  description = "Name of the IAM role and instance profile."
  type        = string
}

variable "ssm_paths" {
  description = "SSM Parameter Store paths whose parameters the nodes may read (bootstrap secrets): the cluster's common path and the role's own."
  type        = list(string)
}

variable "release_bucket" {
  description = "S3 bucket holding release tarballs under releases/; nodes (Nomad artifact downloads) may read that prefix only."
  type        = string
}

variable "extra_statements" {
  description = "Additional IAM policy statements for this role only."
  type = list(object({
    sid       = string
    actions   = list(string)
    resources = list(string)
  }))
  default = []
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
