variable "client_cidrs" {
  description = "Where SDK clients connect from (workers' data-path port)."
  type        = list(string)
}

variable "admin_cidrs" {
  description = "Operator networks allowed on the Nomad, Grafana and Prometheus UIs; empty means SSM port forwarding only."
  type        = list(string)
  default     = []
}

variable "api_certificate_arn" {
  description = "ACM certificate of the region's API hostname (TLS on 443); null serves plain TCP on 80."
  type        = string
  default     = null
}

variable "ansible_repo_url" {
  description = "Read-only Git URL of this repository for ansible-pull."
  type        = string
}

variable "ansible_repo_ref" {
  description = "Tag or commit the hosts converge to."
  type        = string
}

variable "release_bucket" {
  description = "S3 bucket holding releases/<version>/opensandbox_<version>_linux_amd64.tar.gz."
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
