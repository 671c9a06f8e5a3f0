# opensandbox-worker: one allocation on every host of node class "worker".
#
# Driver: podman. The worker checks each agent connection without host pids
# (it opens the sandbox's socket without following links and connects
# through the opened file: services/worker/internal/agentclient/dial.go), so
# it runs in a container of its own pid namespace. It needs the host network
# (it listens on the host's ports and loads the sandboxes' nftables egress
# firewall in the host's network namespace) and NET_ADMIN for that. It
# also hands host paths to the Podman service (per-sandbox socket
# directories, the agent binary), so those directories are host volumes
# mounted at the same path inside the task. Its image (nftables, iptables and
# CA certificates) is built on each worker host by Ansible (scripts/
# build-images.sh worker); the static binary comes from the release.
#
# Discovery: the worker registers itself in Consul (OPENSANDBOX_REGISTRY =
# consul, service opensandbox-worker, through the host's Consul agent) and
# finds NATS in the Consul catalog; nothing here names another host.
#
# Sandboxes outlive the worker process: they belong to the host's Podman
# service, and a restarted worker finds them again by label (its worker id is
# the EC2 instance id, stable across allocations).
#
# TLS (docs/deploy.md, "TLS"): the host keeps a certificate for its own name
# <instance id>.w.<region>.<domain> (ACME DNS-01 through Route 53,
# ansible/roles/worker_tls) in the opensandbox-tls host volume; the worker
# serves both its data path (HTTPS) and its gRPC port with it, re-reading it
# when renewed, and requires the control plane's client certificate on gRPC
# (mutual TLS, CA from the Nomad variable opensandbox/grpc).

variable "region" {
  description = "Nomad region (equal to the AWS region)."
  type        = string
}

variable "datacenters" {
  description = "Nomad datacenters to place workers in."
  type        = list(string)
  default     = ["*"]
}

variable "release_version" {
  description = "Release to run, e.g. v0.1.0 (releases/<version>/ in the release bucket)."
  type        = string
}

variable "release_sha256" {
  description = "SHA-256 of opensandbox_<version>_linux_amd64.tar.gz; Nomad refuses a tarball that does not match."
  type        = string
}

variable "worker_image" {
  description = "Image the worker runs in: nftables, iptables and CA certificates (built on every worker host by Ansible, scripts/build-images.sh worker)."
  type        = string
  default     = "localhost/opensandbox/worker-runtime:latest"
}

variable "release_bucket" {
  description = "This region's release bucket (terraform output release_bucket; read through the instance profile). No dots: the artifact URL is virtual-hosted."
  type        = string
}

job "opensandbox-worker" {
  region      = var.region
  datacenters = var.datacenters
  type        = "system"

  constraint {
    attribute = "${node.class}"
    value     = "worker"
  }

  # One host at a time: a worker restart interrupts its data path for a few
  # seconds (sandboxes keep running), so never more than one at once.
  update {
    max_parallel     = 1
    health_check     = "checks"
    min_healthy_time = "20s"
    healthy_deadline = "5m"
  }

  group "worker" {
    restart {
      attempts = 5
      interval = "5m"
      delay    = "5s"
      mode     = "delay"
    }

    volume "data" {
      type   = "host"
      source = "opensandbox-data"
    }

    volume "run" {
      type   = "host"
      source = "opensandbox-run"
    }

    # The host's own certificate (renewed by the host; the worker re-reads it).
    volume "tls" {
      type      = "host"
      source    = "opensandbox-tls"
      read_only = true
    }

    network {
      mode = "host"
      port "http" {
        static = 8081
      }
      port "grpc" {
        static = 9090
      }
    }

    # The worker registers opensandbox-worker itself (with its TTL check,
    # draining flag and addresses: what placement reads). Nomad's own
    # service watches /health to restart a hung worker and is what
    # Prometheus scrapes (by the worker's TLS name).
    service {
      name     = "opensandbox-worker-http"
      port     = "http"
      provider = "consul"
      tags     = ["http", "metrics"]

      meta {
        worker_id   = "${attr.unique.platform.aws.instance-id}"
        worker_name = "${meta.opensandbox_worker_name}" # Prometheus scrapes https://<name>
      }

      check {
        name            = "health"
        type            = "http"
        protocol        = "https"
        tls_server_name = "${meta.opensandbox_worker_name}"
        path            = "/health"
        interval = "10s"
        timeout  = "2s"

        check_restart {
          limit = 3
          grace = "60s"
        }
      }
    }

    # gRPC takes the control plane's client certificate and the cluster
    # secret, so the check only proves the port accepts connections; /health
    # above covers the process.
    service {
      name     = "opensandbox-worker-grpc"
      port     = "grpc"
      provider = "consul"
      tags     = ["grpc"]

      check {
        name     = "grpc-port"
        type     = "tcp"
        interval = "10s"
        timeout  = "2s"
      }
    }

    # Copies this release's agent binary to a versioned host path. Podman
    # bind-mounts it into every new sandbox, so it must be a host path; running
    # sandboxes keep the version they started with.
    task "install-agent" {
      driver       = "exec"
      user         = "root"
      kill_timeout = "5s"

      lifecycle {
        hook    = "prestart"
        sidecar = false
      }

      artifact {
        source      = "s3::https://${var.release_bucket}.s3.${var.region}.amazonaws.com/releases/${var.release_version}/opensandbox_${var.release_version}_linux_amd64.tar.gz"
        destination = "local/"
        options {
          checksum = "sha256:${var.release_sha256}"
        }
      }

      volume_mount {
        volume      = "data"
        destination = "/var/lib/opensandbox"
      }

      config {
        command = "/bin/sh"
        args    = ["-c", "install -D -m 0755 local/osb-agent /var/lib/opensandbox/agent/${var.release_version}/osb-agent"]
      }

      resources {
        cpu    = 100
        memory = 64
      }
    }

    task "worker" {
      driver      = "podman"
      user        = "root" # the root Podman socket; sandboxes are root-owned
      kill_signal = "SIGTERM"
      # Worker shutdown (services/worker/app/app.go, shutdownBudget = 15s):
      # gRPC graceful stop up to 15s, then HTTP shutdown up to 15s, then the
      # last events published (up to 5s) and a 2s NATS flush. 40s covers the
      # sum; clients set max_kill_timeout = 60s.
      kill_timeout = "40s"

      artifact {
        source      = "s3::https://${var.release_bucket}.s3.${var.region}.amazonaws.com/releases/${var.release_version}/opensandbox_${var.release_version}_linux_amd64.tar.gz"
        destination = "local/"
        options {
          checksum = "sha256:${var.release_sha256}"
        }
      }

      volume_mount {
        volume      = "data"
        destination = "/var/lib/opensandbox"
        # The worker mounts each sandbox's disk and run directory here, and
        # binds disks over layers of the Podman store kept here too: those
        # mounts must reach the host, where Podman starts the sandbox.
        propagation_mode = "bidirectional"
      }

      volume_mount {
        volume      = "run"
        destination = "/run/opensandbox"
      }

      volume_mount {
        volume      = "tls"
        destination = "/etc/opensandbox/tls/worker"
        read_only   = true
      }

      config {
        image        = var.worker_image
        command      = "/local/opensandbox-worker"
        network_mode = "host"
        # The egress firewall of networked sandboxes is an nftables table
        # the worker loads and repairs itself (docs/security.md); without
        # NET_ADMIN every networked create is refused. The clients' Podman
        # plugin allows it (ansible/roles/nomad, allow_caps). The pid
        # namespace stays the container's own: the agent-socket check needs
        # no host pid.
        cap_add = ["net_admin"]
        # The host's /proc, read-only: the worker enters each sandbox's user
        # namespace by its host pid to set its limits (OPENSANDBOX_HOST_PROC).
        volumes = ["/proc:/host/proc:ro"]
      }

      env {
        OPENSANDBOX_HOST             = "0.0.0.0"
        OPENSANDBOX_PORT             = "${NOMAD_PORT_http}"
        OPENSANDBOX_GRPC_PORT        = "${NOMAD_PORT_grpc}"
        OPENSANDBOX_WORKER_ID = "${attr.unique.platform.aws.instance-id}"
        OPENSANDBOX_REGION    = "${node.region}"
        # The control plane dials the worker's name (the private zone gives
        # the VPC address) and verifies its certificate against it.
        OPENSANDBOX_WORKER_GRPC_ADDR = "${meta.opensandbox_worker_name}:${NOMAD_PORT_grpc}"
        OPENSANDBOX_TLS_CERT         = "/etc/opensandbox/tls/worker/cert.pem"
        OPENSANDBOX_TLS_KEY          = "/etc/opensandbox/tls/worker/key.pem"
        OPENSANDBOX_GRPC_TLS_CERT    = "/etc/opensandbox/tls/worker/cert.pem"
        OPENSANDBOX_GRPC_TLS_KEY     = "/etc/opensandbox/tls/worker/key.pem"
        OPENSANDBOX_GRPC_TLS_CA      = "${NOMAD_SECRETS_DIR}/grpc-client-ca.pem"
        OPENSANDBOX_DATA_DIR         = "/var/lib/opensandbox"
        OPENSANDBOX_PODMAN_URI       = "unix:///run/opensandbox/podman.sock"
        OPENSANDBOX_AGENT_BINARY     = "/var/lib/opensandbox/agent/${var.release_version}/osb-agent"
        OPENSANDBOX_VERSION          = var.release_version
        # Consul: the host's agent (host network); a region is a datacenter.
        OPENSANDBOX_REGISTRY  = "consul"
        OPENSANDBOX_HOST_PROC = "/host/proc"
        CONSUL_HTTP_ADDR      = "127.0.0.1:8500"
      }

      # Secrets shared with the control plane (Nomad variable
      # opensandbox/shared, readable through the opensandbox-shared policy)
      # and the /metrics token Prometheus presents (opensandbox/metrics,
      # through the opensandbox-metrics policy): Prometheus never holds the
      # cluster secret.
      template {
        destination = "secrets/worker.env"
        env         = true
        change_mode = "restart"
        data        = <<-EOT
          {{- with nomadVar "opensandbox/shared" }}
          OPENSANDBOX_JWT_SECRET={{ .jwt_secret | toJSON }}
          OPENSANDBOX_WORKER_SECRET={{ .worker_secret | toJSON }}
          {{- end }}
          {{- with nomadVar "opensandbox/metrics" }}
          OPENSANDBOX_METRICS_TOKEN={{ .token | toJSON }}
          {{- end }}
          {{- /* Its Consul ACL token (policy scripts/consul-acl/opensandbox-worker.hcl, put there by scripts/bootstrap-region.sh). */}}
          {{- with nomadVar "nomad/jobs/opensandbox-worker" }}{{ with .consul_token }}
          CONSUL_HTTP_TOKEN={{ . | toJSON }}
          {{- end }}{{ end }}
        EOT
      }

      # The CA of the control plane's gRPC client certificate (Nomad
      # variable opensandbox/grpc, opensandbox-grpc policy): only a client
      # certificate it signed may call this worker.
      template {
        destination = "secrets/grpc-client-ca.pem"
        change_mode = "restart"
        perms       = "0444"
        data        = <<-EOT
          {{- with nomadVar "opensandbox/grpc" }}{{ .client_ca_pem }}{{ end -}}
        EOT
      }

      # The connectURL SDKs use: the host's name, which its certificate
      # covers. Tunables come from Consul KV with defaults (docs/deploy.md).
      template {
        destination = "local/worker.env"
        env         = true
        change_mode = "restart"
        splay       = "2m"
        data        = <<-EOT
          OPENSANDBOX_WORKER_URL=https://{{ env "meta.opensandbox_worker_name" }}:{{ env "NOMAD_PORT_http" }}
          OPENSANDBOX_CAPACITY={{ keyOrDefault "opensandbox/worker/capacity" "200" }}
          OPENSANDBOX_MAX_CPUS={{ keyOrDefault "opensandbox/worker/max_cpus" "4" }}
          OPENSANDBOX_MAX_MEMORY_MB={{ keyOrDefault "opensandbox/worker/max_memory_mb" "8192" }}
          OPENSANDBOX_DEFAULT_TIMEOUT={{ keyOrDefault "opensandbox/worker/default_timeout" "300" }}
          OPENSANDBOX_MAX_TIMEOUT={{ keyOrDefault "opensandbox/worker/max_timeout" "86400" }}
          OPENSANDBOX_IMAGE_GC_AFTER={{ keyOrDefault "opensandbox/worker/image_gc_after" "24h" }}
          OPENSANDBOX_LOG_LEVEL={{ keyOrDefault "opensandbox/log_level" "info" }}
        EOT
      }

      # NATS members from the Consul catalog, as NATS user worker with
      # its password from the Nomad variable nomad/jobs/opensandbox-worker
      # (only this job reads it). noop: the client learns the cluster's
      # other servers from NATS itself and reconnects among them with the
      # same credentials, so a member moving needs no restart.
      template {
        destination = "secrets/nats.env"
        env         = true
        change_mode = "noop"
        data        = <<-EOT
          {{- with nomadVar "nomad/jobs/opensandbox-worker" }}{{ $pw := .nats_password }}
          NATS_URL={{ range $i, $s := service "nats" }}{{ if $i }},{{ end }}nats://worker:{{ $pw }}@{{ $s.Address }}:{{ $s.Port }}{{ end }}
          {{- end }}
        EOT
      }

      resources {
        cpu    = 4000
        memory = 2048
      }
    }
  }
}
