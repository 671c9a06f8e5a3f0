# OpenSandbox in us-east-1: what makes this region itself (name, address range)
# is set here; everything an operator tunes comes from terraform.tfvars.

module "region" {
  source = "../../modules/region"

  cluster  = "osb-use1"
  region   = "us-east-1"
  vpc_cidr = "10.40.0.0/16"

  client_cidrs        = var.client_cidrs
  admin_cidrs         = var.admin_cidrs
  api_certificate_arn = var.api_certificate_arn
  ansible_repo_url    = var.ansible_repo_url
  ansible_repo_ref    = var.ansible_repo_ref
  release_bucket      = var.release_bucket
  worker_desired      = var.worker_desired
  worker_max          = var.worker_max
}
