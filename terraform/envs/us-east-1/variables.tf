variable "ami_id" {
  description = "Pinned Debian 12 amd64 AMI of this region (Debian's account 136693071363); change it on purpose to roll hosts."
  type        = string
}

variable "domain" {
  description = "Domain of the region's names (api.<region>.<domain>, preview and worker names under it)."
  type        = string
}

variable "zone_id" {
  description = "Public Route 53 hosted zone of var.domain."
  type        = string
}

variable "acme_email" {
  description = "Contact address of the workers' ACME account."
  type        = string
}

variable "client_cidrs" {
  description = "Where SDK clients connect from (workers' data-path port)."
  type        = list(string)
}

variable "admin_cidrs" {
  description = "Operator networks allowed on the Nomad, Grafana and Prometheus UIs; empty means SSM port forwarding only."
  type        = list(string)
  default     = []
}

variable "ansible_repo_url" {
  description = "Read-only Git URL of this repository for ansible-pull."
  type        = string
}

variable "ansible_repo_ref" {
  description = "Tag or commit the hosts converge to."
  type        = string
}

variable "worker_desired" {
  description = "Initial number of workers (later changes belong to operators or an autoscaler)."
  type        = number
  default     = 2
}

variable "worker_max" {
  description = "Upper bound of the worker fleet."
  type        = number
  default     = 10
}
