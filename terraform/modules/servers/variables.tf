variable "name" {
  description = "Name prefix of every resource (the cluster name)."
  type        = string
}

variable "server_count" {
  description = "Control-group hosts: each runs a Nomad server, a Consul server and the control-group jobs (control plane, syncer, NATS, Prometheus, Grafana). Odd, for Raft quorum."
  type        = number
  default     = 3

  validation {
    condition     = contains([3, 5], var.server_count)
    error_message = "server_count must be 3 or 5 (Raft quorum; NATS JetStream uses 3 replicas)."
  }
}

variable "instance_type" {
  description = "Instance type of the control group."
  type        = string
  default     = "m6i.xlarge"
}

variable "ami_id" {
  description = "AMI of the control group: Debian 12 (amd64), or an image baked from it with the playbook applied."
  type        = string
}

variable "root_volume_gb" {
  description = "Root volume size (GiB): Nomad/Consul state, NATS JetStream files, Prometheus TSDB."
  type        = number
  default     = 200
}

variable "subnet_ids" {
  description = "Private subnets to spread the control group over (one per AZ)."
  type        = list(string)
}

variable "security_group_id" {
  description = "Security group of the control group (from the network module)."
  type        = string
}

variable "target_group_arns" {
  description = "Load balancer target groups the hosts register into (the API target group)."
  type        = list(string)
  default     = []
}

variable "user_data" {
  description = "Cloud-init user data (from the bootstrap module)."
  type        = string
}

variable "instance_profile_name" {
  description = "Instance profile of the control group (from the instance-profile module)."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
