variable "cluster" {
  description = "Cluster name, unique per region (e.g. \"osb-use1\"); prefixes every resource. At most 16 characters."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,15}$", var.cluster))
    error_message = "cluster must be 2-16 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "region" {
  description = "AWS region of this root; must equal the provider's region."
  type        = string
}

variable "vpc_cidr" {
  description = "CIDR of the region's VPC. Give every region its own range so regions can be peered later."
  type        = string
}

variable "single_nat_gateway" {
  description = "One NAT gateway instead of one per AZ (cheaper, not AZ-fault-tolerant)."
  type        = bool
  default     = false
}

variable "client_cidrs" {
  description = "CIDRs allowed on the workers' data-path port (where SDKs run)."
  type        = list(string)
}

variable "api_client_cidrs" {
  description = "CIDRs allowed on the API load balancer."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "admin_cidrs" {
  description = "CIDRs allowed on the operator UIs (Nomad, Grafana, Prometheus). Empty: use SSM port forwarding."
  type        = list(string)
  default     = []
}

variable "domain" {
  description = "Domain the region's names live under: api.<region>.<domain>, *.preview.<region>.<domain>, <worker>.w.<region>.<domain>."
  type        = string
}

variable "zone_id" {
  description = "Public Route 53 hosted zone of var.domain (Terraform adds the API, preview, certificate validation and worker delegation records)."
  type        = string
}

variable "acme_email" {
  description = "Contact address of the ACME account the workers get their certificates with (expiry notices)."
  type        = string
}

variable "acme_directory" {
  description = "ACME directory the workers use (Let's Encrypt by default; its staging directory for trials)."
  type        = string
  default     = "https://acme-v02.api.letsencrypt.org/directory"
}

variable "ansible_repo_url" {
  description = "Git URL of this repository for ansible-pull (read-only, no credentials in it)."
  type        = string
}

variable "ansible_repo_ref" {
  description = "Tag or commit of this repository the hosts converge to."
  type        = string
}


variable "control_instance_type" {
  description = "Instance type of the control group."
  type        = string
  default     = "m6i.xlarge"
}

variable "control_count" {
  description = "Control-group hosts (3 or 5)."
  type        = number
  default     = 3
}

variable "worker_instance_type" {
  description = "Bare-metal instance type of the workers."
  type        = string
  default     = "c6i.metal"
}

variable "worker_min" {
  description = "Minimum number of workers."
  type        = number
  default     = 1
}

variable "worker_max" {
  description = "Maximum number of workers."
  type        = number
  default     = 10
}

variable "worker_desired" {
  description = "Initial number of workers (later changes are left to operators or an autoscaler)."
  type        = number
  default     = 2
}

variable "worker_public_ip" {
  description = "Workers get public IPv4 addresses and sit in public subnets."
  type        = bool
  default     = true
}

variable "ami_id" {
  description = "Debian 12 (amd64) AMI of this region, pinned: hosts change only when this changes (docs/deploy.md says how to pick and roll a new one)."
  type        = string

  validation {
    condition     = can(regex("^ami-[0-9a-f]{8,17}$", var.ami_id))
    error_message = "ami_id must be an AMI id (ami-...)."
  }
}

variable "worker_ami_id" {
  description = "A baked worker AMI (the playbook applied, template images built) to shorten scale-out; null uses ami_id."
  type        = string
  default     = null
}

variable "enable_rds" {
  description = "Create an RDS PostgreSQL instance for the region. False: bring your own PostgreSQL and put its URL in the Nomad variable."
  type        = bool
  default     = true
}

variable "rds_instance_class" {
  description = "RDS instance class (when enable_rds)."
  type        = string
  default     = "db.m6g.large"
}

variable "rds_multi_az" {
  description = "RDS synchronous standby in another AZ (when enable_rds)."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
