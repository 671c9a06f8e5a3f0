# Network load balancer in front of the control plane's REST API. Only the
# create/list/kill path goes through it: SDKs talk to workers directly after a
# sandbox exists. Targets are the control-group instances; the health check
# asks /health, so only hosts that currently run a control-plane allocation
# receive traffic.

resource "aws_lb" "api" {
  name                             = "${var.name}-api"
  load_balancer_type               = "network"
  internal                         = var.internal
  subnets                          = var.subnet_ids
  security_groups                  = [var.security_group_id]
  enable_cross_zone_load_balancing = true
  tags                             = var.tags
}

resource "aws_lb_target_group" "controlplane" {
  name     = "${var.name}-cp"
  port     = var.controlplane_port
  protocol = "TCP"
  vpc_id   = var.vpc_id
  # The control plane drains in-flight requests within 10 s of SIGTERM; keep
  # the target registered a little longer than that.
  deregistration_delay = 15

  health_check {
    protocol            = "HTTP"
    path                = "/health"
    port                = "traffic-port"
    interval            = 10
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }

  tags = var.tags
}

resource "aws_lb_listener" "tls" {
  count             = var.certificate_arn == null ? 0 : 1
  load_balancer_arn = aws_lb.api.arn
  port              = 443
  protocol          = "TLS"
  certificate_arn   = var.certificate_arn
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.controlplane.arn
  }
}

# Plain TCP only when there is no certificate: API keys must not cross the
# internet in clear text.
resource "aws_lb_listener" "tcp" {
  count             = var.certificate_arn == null ? 1 : 0
  load_balancer_arn = aws_lb.api.arn
  port              = 80
  protocol          = "TCP"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.controlplane.arn
  }
}
