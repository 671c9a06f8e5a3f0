variable "name" {
  description = "Name prefix of every resource, e.g. \"osb-us-east-1\"."
  type        = string
}

variable "vpc_cidr" {
  description = "CIDR block of the region's VPC. Public and private subnets are carved from it (/20 each)."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && tonumber(split("/", var.vpc_cidr)[1]) <= 18
    error_message = "vpc_cidr must be a valid CIDR of size /18 or larger (six /20 subnets are carved from it)."
  }
}

variable "az_count" {
  description = "Availability zones to spread subnets over (2 or 3). The control group and NATS need 3 for a quorum that survives an AZ."
  type        = number
  default     = 3

  validation {
    condition     = var.az_count >= 2 && var.az_count <= 3
    error_message = "az_count must be 2 or 3."
  }
}

variable "single_nat_gateway" {
  description = "One NAT gateway for the whole VPC (cheaper) instead of one per AZ (survives an AZ outage)."
  type        = bool
  default     = false
}

variable "client_cidrs" {
  description = "CIDRs allowed to reach the workers' data-path port (SDK traffic goes straight to workers). Empty means no client can reach workers."
  type        = list(string)
  default     = []
}

variable "api_client_cidrs" {
  description = "CIDRs allowed to reach the API load balancer (control plane REST API)."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "admin_cidrs" {
  description = "CIDRs allowed to reach the Nomad UI/API, Prometheus and Grafana on the control group. Leave empty and use SSM Session Manager port forwarding instead (also the only way to the Consul UI, which listens on 127.0.0.1)."
  type        = list(string)
  default     = []
}

variable "ports" {
  description = "Service ports. They must match the Nomad jobs (nomad/*.nomad.hcl) and the binaries' defaults; change both together."
  type = object({
    controlplane_http = number
    worker_http       = number
    worker_grpc       = number
    syncer_http       = number
    nats_client       = number
    nats_cluster      = number
    nats_monitor      = number
    prometheus        = number
    grafana           = number
    alertmanager      = number
    node_exporter     = number
  })
  default = {
    controlplane_http = 8080
    worker_http       = 8081
    worker_grpc       = 9090
    syncer_http       = 8090
    nats_client       = 4222
    nats_cluster      = 6222
    nats_monitor      = 8222
    prometheus        = 9091
    grafana           = 3000
    alertmanager      = 9093
    node_exporter     = 9100
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
