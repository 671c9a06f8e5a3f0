# DNS and certificates of one region, under a public Route 53 zone the
# operator already has (var.zone_id for var.domain):
#   api.<region>.<domain>        alias to the API load balancer, ACM certificate
#   *.preview.<region>.<domain>  alias to the same load balancer (preview URLs), same certificate
#   w.<region>.<domain>          a zone of its own for the workers' names, public
#                                (the worker's public address and ACME DNS-01
#                                challenges) and private (its VPC address, for
#                                the control plane's gRPC), so a worker's
#                                instance role can write worker names and nothing else.

locals {
  region_domain  = "${var.region}.${var.domain}"
  api_name       = "api.${local.region_domain}"
  preview_domain = "preview.${local.region_domain}"
  worker_domain  = "w.${local.region_domain}"
}

resource "aws_acm_certificate" "api" {
  domain_name               = local.api_name
  subject_alternative_names = ["*.${local.preview_domain}"]
  validation_method         = "DNS"
  tags                      = var.tags

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_route53_record" "validation" {
  for_each = {
    for o in aws_acm_certificate.api.domain_validation_options : o.domain_name => o
  }

  zone_id         = var.zone_id
  name            = each.value.resource_record_name
  type            = each.value.resource_record_type
  records         = [each.value.resource_record_value]
  ttl             = 300
  allow_overwrite = true
}

resource "aws_acm_certificate_validation" "api" {
  certificate_arn         = aws_acm_certificate.api.arn
  validation_record_fqdns = [for r in aws_route53_record.validation : r.fqdn]
}

resource "aws_route53_record" "api" {
  for_each = toset([local.api_name, "*.${local.preview_domain}"])

  zone_id = var.zone_id
  name    = each.value
  type    = "A"

  alias {
    name                   = var.lb_dns_name
    zone_id                = var.lb_zone_id
    evaluate_target_health = true
  }
}

resource "aws_route53_zone" "workers_public" {
  name          = local.worker_domain
  comment       = "OpenSandbox workers of ${var.region}: public addresses and ACME challenges"
  force_destroy = true # records are the workers' own, rewritten at boot
  tags          = var.tags
}

resource "aws_route53_record" "workers_delegation" {
  zone_id = var.zone_id
  name    = local.worker_domain
  type    = "NS"
  ttl     = 3600
  records = aws_route53_zone.workers_public.name_servers
}

resource "aws_route53_zone" "workers_private" {
  name          = local.worker_domain
  comment       = "OpenSandbox workers of ${var.region}: VPC addresses (control plane -> worker gRPC)"
  force_destroy = true
  tags          = var.tags

  vpc {
    vpc_id = var.vpc_id
  }
}

# Only var.caa_issuer may issue for worker names, and only by DNS-01: an
# HTTP challenge answered from an address a worker once held cannot get a
# certificate for its name.
resource "aws_route53_record" "workers_caa" {
  zone_id = aws_route53_zone.workers_public.zone_id
  name    = local.worker_domain
  type    = "CAA"
  ttl     = 3600
  records = ["0 issue \"${var.caa_issuer}; validationmethods=dns-01\"", "0 issuewild \";\""]
}
