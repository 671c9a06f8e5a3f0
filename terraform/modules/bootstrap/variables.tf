variable "role" {
  description = "Node role the playbook configures: \"control\" (Nomad/Consul servers that also run the control-group jobs) or \"worker\" (sandbox host)."
  type        = string

  validation {
    condition     = contains(["control", "worker"], var.role)
    error_message = "role must be \"control\" or \"worker\"."
  }
}

variable "cluster" {
  description = "Cluster name (one per region). Consul cloud auto-join and SSM parameter paths are scoped by it."
  type        = string
}

variable "region" {
  description = "AWS region; also the Nomad region and the Consul datacenter, so Consul DNS names read <service>.service.<region>.consul."
  type        = string
}

variable "ansible_repo_url" {
  description = "Git URL ansible-pull clones (this repository). Use a read-only deploy URL; it must carry no credentials."
  type        = string

  validation {
    condition     = !can(regex("://[^/@]+@", var.ansible_repo_url))
    error_message = "ansible_repo_url must not embed credentials (user:token@host)."
  }
}

variable "ansible_repo_ref" {
  description = "Branch, tag or commit ansible-pull checks out. Pin a tag in production so a push does not change new hosts."
  type        = string
}

variable "ssm_prefix" {
  description = "SSM Parameter Store path (e.g. /opensandbox/osb-use1) of the bootstrap secrets: the host reads <path>/common and <path>/<role> (scripts/bootstrap-region.sh writes them)."
  type        = string

  validation {
    condition     = startswith(var.ssm_prefix, "/") && !endswith(var.ssm_prefix, "/")
    error_message = "ssm_prefix must start with / and not end with /."
  }
}

variable "expected_servers" {
  description = "Number of Nomad/Consul servers (bootstrap_expect)."
  type        = number
}

variable "extra_vars" {
  description = "More Ansible variables for this role (non-secret), merged over the ones this module sets."
  type        = map(string)
  default     = {}
}
