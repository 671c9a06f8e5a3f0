# Security groups. Four roles:
#   lb       - the API network load balancer
#   control  - Nomad/Consul servers, control plane, syncer, NATS, Prometheus, Grafana
#   workers  - bare-metal sandbox hosts
#   database - PostgreSQL (RDS)
# Every rule names its peer group; only the workers' data port and the load
# balancer's listener take traffic from CIDRs.

resource "aws_security_group" "lb" {
  name        = "${var.name}-lb"
  description = "OpenSandbox API load balancer"
  vpc_id      = aws_vpc.this.id
  tags        = merge(var.tags, { Name = "${var.name}-lb" })
}

resource "aws_security_group" "control" {
  name        = "${var.name}-control"
  description = "OpenSandbox control group: Nomad/Consul servers, control plane, syncer, NATS, observability"
  vpc_id      = aws_vpc.this.id
  tags        = merge(var.tags, { Name = "${var.name}-control" })
}

resource "aws_security_group" "workers" {
  name        = "${var.name}-workers"
  description = "OpenSandbox workers (sandbox hosts)"
  vpc_id      = aws_vpc.this.id
  tags        = merge(var.tags, { Name = "${var.name}-workers" })
}

resource "aws_security_group" "database" {
  name        = "${var.name}-database"
  description = "OpenSandbox PostgreSQL"
  vpc_id      = aws_vpc.this.id
  tags        = merge(var.tags, { Name = "${var.name}-database" })
}

locals {
  p = var.ports

  # Rules between groups: {key => [to_group, from_group, protocol, from_port, to_port, why]}.
  group_rules = {
    # API path: load balancer -> control plane.
    lb_to_cp = ["control", "lb", "tcp", local.p.controlplane_http, local.p.controlplane_http, "API traffic from the load balancer"]

    # Control plane -> workers: create/destroy over gRPC; Prometheus scrapes the
    # workers' /metrics on their HTTP port, node_exporter and the Nomad agent.
    cp_grpc        = ["workers", "control", "tcp", local.p.worker_grpc, local.p.worker_grpc, "SandboxWorker gRPC from the control plane"]
    prom_worker    = ["workers", "control", "tcp", local.p.worker_http, local.p.worker_http, "Prometheus scrapes worker /metrics (HTTPS)"]
    prom_node_w    = ["workers", "control", "tcp", local.p.node_exporter, local.p.node_exporter, "Prometheus scrapes node_exporter"]
    nomad_http_w   = ["workers", "control", "tcp", 4646, 4646, "Prometheus scrapes Nomad client metrics"]
    consul_lan_w   = ["workers", "control", "tcp", 8301, 8301, "Consul LAN gossip"]
    consul_lan_w_u = ["workers", "control", "udp", 8301, 8301, "Consul LAN gossip"]
    consul_lan_ww  = ["workers", "workers", "tcp", 8301, 8301, "Consul LAN gossip between clients"]
    consul_lan_wwu = ["workers", "workers", "udp", 8301, 8301, "Consul LAN gossip between clients"]

    # Workers -> control group: heartbeats and events over NATS, Nomad and
    # Consul client RPC and gossip.
    w_nats       = ["control", "workers", "tcp", local.p.nats_client, local.p.nats_client, "NATS from workers (heartbeats, events)"]
    w_nomad_rpc  = ["control", "workers", "tcp", 4647, 4647, "Nomad client RPC"]
    w_consul_rpc = ["control", "workers", "tcp", 8300, 8300, "Consul server RPC"]
    w_consul_lan = ["control", "workers", "tcp", 8301, 8301, "Consul LAN gossip"]
    w_consul_lau = ["control", "workers", "udp", 8301, 8301, "Consul LAN gossip"]

    # Inside the control group.
    c_nats         = ["control", "control", "tcp", local.p.nats_client, local.p.nats_client, "NATS clients (control plane, syncer)"]
    c_nats_cluster = ["control", "control", "tcp", local.p.nats_cluster, local.p.nats_cluster, "NATS cluster routes"]
    c_nomad        = ["control", "control", "tcp", 4646, 4648, "Nomad HTTP, RPC and serf"]
    c_nomad_udp    = ["control", "control", "udp", 4648, 4648, "Nomad serf"]
    c_consul       = ["control", "control", "tcp", 8300, 8302, "Consul RPC and gossip"]
    c_consul_udp   = ["control", "control", "udp", 8301, 8302, "Consul gossip"]
    c_cp_metrics   = ["control", "control", "tcp", local.p.controlplane_http, local.p.controlplane_http, "Prometheus scrapes the control plane"]
    c_syncer       = ["control", "control", "tcp", local.p.syncer_http, local.p.syncer_http, "Prometheus scrapes the syncer"]
    c_node         = ["control", "control", "tcp", local.p.node_exporter, local.p.node_exporter, "Prometheus scrapes node_exporter"]
    c_grafana_prom = ["control", "control", "tcp", local.p.prometheus, local.p.prometheus, "Grafana queries Prometheus"]
    c_alertmanager = ["control", "control", "tcp", local.p.alertmanager, local.p.alertmanager, "Prometheus sends alerts to Alertmanager"]

    # PostgreSQL only from the control group (control plane, syncer).
    db_from_control = ["database", "control", "tcp", 5432, 5432, "PostgreSQL from the control plane and the syncer"]
  }

  # Rules from CIDRs: {key => [to_group, cidr, port, why]}.
  cidr_rules = merge(
    { for c in var.client_cidrs : "data_${c}" => ["workers", c, local.p.worker_http, "SDK data path to workers"] },
    { for c in var.api_client_cidrs : "api443_${c}" => ["lb", c, 443, "API (TLS listener)"] },
    { for c in var.admin_cidrs : "nomad_${c}" => ["control", c, 4646, "Nomad UI/API for operators"] },
    { for c in var.admin_cidrs : "grafana_${c}" => ["control", c, local.p.grafana, "Grafana for operators"] },
    { for c in var.admin_cidrs : "prom_${c}" => ["control", c, local.p.prometheus, "Prometheus for operators"] },
  )

  groups = {
    lb       = aws_security_group.lb.id
    control  = aws_security_group.control.id
    workers  = aws_security_group.workers.id
    database = aws_security_group.database.id
  }
}

resource "aws_vpc_security_group_ingress_rule" "group" {
  for_each = local.group_rules

  security_group_id            = local.groups[each.value[0]]
  referenced_security_group_id = local.groups[each.value[1]]
  ip_protocol                  = each.value[2]
  from_port                    = each.value[3]
  to_port                      = each.value[4]
  description                  = each.value[5]
}

resource "aws_vpc_security_group_ingress_rule" "cidr" {
  for_each = local.cidr_rules

  security_group_id = local.groups[each.value[0]]
  cidr_ipv4         = each.value[1]
  ip_protocol       = "tcp"
  from_port         = each.value[2]
  to_port           = each.value[2]
  description       = each.value[3]
}

# Egress. Hosts need apt, S3 (release artifacts), SSM and the AWS APIs, and
# sandboxes created with networkEnabled reach the internet from the workers;
# the worker itself filters what a sandbox may reach.
resource "aws_vpc_security_group_egress_rule" "all" {
  for_each = { control = "control", workers = "workers" }

  security_group_id = local.groups[each.value]
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "-1"
  description       = "Outbound: packages, AWS APIs, sandbox egress"
}

# The load balancer only forwards to the control plane.
resource "aws_vpc_security_group_egress_rule" "lb_to_control" {
  security_group_id            = aws_security_group.lb.id
  referenced_security_group_id = aws_security_group.control.id
  ip_protocol                  = "tcp"
  from_port                    = local.p.controlplane_http
  to_port                      = local.p.controlplane_http
  description                  = "Forward API traffic and health checks to the control plane"
}
