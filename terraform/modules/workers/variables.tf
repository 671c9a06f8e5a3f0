variable "name" {
  description = "Name prefix of every resource (the cluster name)."
  type        = string
}

variable "instance_type" {
  description = "Bare-metal instance type of the workers (c6i.metal, m6i.metal, i3.metal, ...). Metal gives every sandbox native performance and leaves room for a microVM runtime (/dev/kvm)."
  type        = string
  default     = "c6i.metal"

  validation {
    condition     = endswith(var.instance_type, ".metal") || endswith(var.instance_type, ".metal-24xl") || endswith(var.instance_type, ".metal-48xl")
    error_message = "instance_type must be a bare-metal type (*.metal)."
  }
}

variable "ami_id" {
  description = "AMI of the workers: Debian 12 (amd64), or an image baked from it (playbook applied, template images built) to shorten scale-out."
  type        = string
}

variable "root_volume_gb" {
  description = "Root volume size (GiB): container storage and per-sandbox data live here."
  type        = number
  default     = 500
}

variable "min_size" {
  description = "Minimum number of workers."
  type        = number
  default     = 1
}

variable "max_size" {
  description = "Maximum number of workers."
  type        = number
  default     = 10
}

variable "desired_capacity" {
  description = "Workers to run now. Terraform ignores later changes to it, so an operator or an autoscaler can move it."
  type        = number
  default     = 2
}

variable "subnet_ids" {
  description = "Subnets of the workers: public ones when public_ip is true (SDKs connect to workers directly)."
  type        = list(string)
}

variable "public_ip" {
  description = "Give each worker a public IPv4 address; its connectURL then uses it. False keeps workers private (clients reach them through a VPN or peering)."
  type        = bool
  default     = true
}

variable "security_group_id" {
  description = "Security group of the workers (from the network module)."
  type        = string
}

variable "user_data" {
  description = "Cloud-init user data (from the bootstrap module)."
  type        = string
}

variable "instance_profile_name" {
  description = "Instance profile of the workers (from the instance-profile module)."
  type        = string
}

variable "drain_timeout_seconds" {
  description = "How long a terminating worker may take to drain (Nomad stops the worker task within its kill timeout) before the instance goes away."
  type        = number
  default     = 300

  validation {
    condition     = var.drain_timeout_seconds >= 60 && var.drain_timeout_seconds <= 7200
    error_message = "drain_timeout_seconds must be between 60 and 7200."
  }
}

variable "drain_hook_name" {
  description = "Name of the termination lifecycle hook; the hosts' drain watcher completes it by this name."
  type        = string
  default     = "drain"
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
