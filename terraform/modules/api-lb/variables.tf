variable "name" {
  description = "Name prefix (at most 20 characters: load balancer and target group names are limited to 32)."
  type        = string

  validation {
    condition     = length(var.name) <= 20
    error_message = "name must be at most 20 characters."
  }
}

variable "vpc_id" {
  description = "VPC of the control group."
  type        = string
}

variable "subnet_ids" {
  description = "Public subnets the load balancer listens in, one per AZ."
  type        = list(string)
}

variable "security_group_id" {
  description = "Security group of the load balancer (from the network module)."
  type        = string
}

variable "controlplane_port" {
  description = "Port the control plane listens on (OPENSANDBOX_PORT of the opensandbox-controlplane job)."
  type        = number
  default     = 8080
}

variable "certificate_arn" {
  description = "ACM certificate for a TLS listener on 443. Null serves plain TCP on 80 only (for a private or test deployment)."
  type        = string
  default     = null
}

variable "internal" {
  description = "Make the load balancer internal (reachable only inside the VPC and peered networks)."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
