# OpenSandbox in eu-west-1: what makes this region itself (name, address range)
# is set here; everything an operator tunes comes from terraform.tfvars.

module "region" {
  source = "../../modules/region"

  cluster  = "osb-euw1"
  region   = "eu-west-1"
  vpc_cidr = "10.41.0.0/16"

  ami_id           = var.ami_id
  domain           = var.domain
  zone_id          = var.zone_id
  acme_email       = var.acme_email
  client_cidrs     = var.client_cidrs
  admin_cidrs      = var.admin_cidrs
  ansible_repo_url = var.ansible_repo_url
  ansible_repo_ref = var.ansible_repo_ref
  worker_desired   = var.worker_desired
  worker_max       = var.worker_max
}
