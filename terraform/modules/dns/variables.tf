variable "domain" {
  description = "Domain the region's names live under (e.g. \"sandboxes.example.com\"); var.zone_id must be its public Route 53 zone."
  type        = string
}

variable "zone_id" {
  description = "ID of the public Route 53 hosted zone of var.domain (validation records, API and preview aliases, the workers' delegation)."
  type        = string
}

variable "region" {
  description = "AWS region; the names are <name>.<region>.<domain>."
  type        = string
}

variable "vpc_id" {
  description = "VPC the private worker zone is attached to (the control plane resolves workers to their VPC addresses there)."
  type        = string
}

variable "lb_dns_name" {
  description = "DNS name of the API load balancer (alias target)."
  type        = string
}

variable "lb_zone_id" {
  description = "Route 53 zone ID of the API load balancer (alias target)."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

variable "caa_issuer" {
  description = "CA domain allowed to issue the workers' certificates (CAA), matching the ACME directory the workers use."
  type        = string
  default     = "letsencrypt.org"
}
