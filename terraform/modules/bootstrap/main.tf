# Renders the cloud-init user data shared by both node roles: install the SSM
# agent (operator access) and Ansible, fetch the role's bootstrap secrets
# from SSM into tmpfs, run the repository's playbook with ansible-pull, then
# drop the secrets. A baked AMI runs the same
# script; the playbook is idempotent, so it only converges what differs.

locals {
  ansible_vars = merge({
    node_role              = var.role
    opensandbox_cluster    = var.cluster
    opensandbox_region     = var.region
    nomad_expected_server  = tostring(var.expected_servers)
    opensandbox_ssm_prefix = var.ssm_prefix
  }, var.extra_vars)

  user_data = templatefile("${path.module}/user_data.sh.tftpl", {
    role         = var.role
    repo_url     = var.ansible_repo_url
    repo_ref     = var.ansible_repo_ref
    region       = var.region
    ssm_prefix   = var.ssm_prefix
    ansible_vars = jsonencode(local.ansible_vars)
  })
}
