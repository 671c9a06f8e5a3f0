# opensandbox-controlplane: the REST API in server mode (opensandbox-server
# with OPENSANDBOX_MODE=server). Stateless: the worker registry is rebuilt
# from NATS heartbeats within one interval, placement state is in PostgreSQL.
# The API load balancer targets port 8080 on every control-group host and its
# /health check keeps only hosts running an allocation in rotation.

variable "region" {
  description = "Nomad region (equal to the AWS region); also the default sandbox region."
  type        = string
}

variable "datacenters" {
  description = "Nomad datacenters to place the control plane in."
  type        = list(string)
  default     = ["*"]
}

variable "image" {
  description = "The control plane's image of that release, pinned by digest: <registry>/controlplane@sha256:... (make release prints it)."
  type        = string

  validation {
    condition     = can(regex("@sha256:[0-9a-f]{64}$", var.image))
    error_message = "image must be pinned by digest (...@sha256:<64 hex>)."
  }
}

variable "replicas" {
  description = "Control-plane allocations (at most one per control-group host)."
  type        = number
  default     = 3
}

job "opensandbox-controlplane" {
  region      = var.region
  datacenters = var.datacenters
  type        = "service"

  constraint {
    attribute = "${node.class}"
    value     = "control"
  }

  update {
    max_parallel      = 1
    health_check      = "checks"
    min_healthy_time  = "10s"
    healthy_deadline  = "3m"
    progress_deadline = "10m"
    auto_revert       = true
  }

  group "controlplane" {
    count = var.replicas

    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    restart {
      attempts = 3
      interval = "5m"
      delay    = "10s"
      mode     = "delay"
    }

    reschedule {
      delay          = "30s"
      delay_function = "exponential"
      max_delay      = "5m"
      unlimited      = true
    }

    network {
      mode = "host"
      port "http" {
        static = 8080
      }
    }

    service {
      name     = "opensandbox-controlplane"
      port     = "http"
      provider = "consul"
      tags     = ["http", "metrics"]

      check {
        name     = "health"
        type     = "http"
        path     = "/health"
        interval = "10s"
        timeout  = "2s"

        check_restart {
          limit = 3
          grace = "30s"
        }
      }
    }

    task "controlplane" {
      driver      = "podman"
      kill_signal = "SIGTERM"
      # server.Serve shuts the API down within 10s (ShutdownWithTimeout), then
      # closes NATS and the PostgreSQL pool.
      kill_timeout = "15s"

      config {
        image           = var.image
        network_mode    = "host"
        readonly_rootfs = true
        cap_drop        = ["ALL"]
      }

      env {
        OPENSANDBOX_MODE           = "server"
        OPENSANDBOX_HOST           = "${NOMAD_IP_http}"
        OPENSANDBOX_PORT           = "${NOMAD_PORT_http}"
        OPENSANDBOX_DEFAULT_REGION = var.region
        # Replicas may start together: migrations take an advisory lock.
        OPENSANDBOX_MIGRATE = "true"
        # The opensandbox-syncer job consumes the event stream, so the API's
        # capacity does not depend on PostgreSQL write load.
        OPENSANDBOX_RUN_SYNCER = "false"
        # Mutual TLS to the workers: this client certificate, the workers'
        # own (public ACME) certificates verified against the system roots
        # for the names the control plane dials.
        OPENSANDBOX_GRPC_TLS_CERT = "${NOMAD_SECRETS_DIR}/grpc-client.pem"
        OPENSANDBOX_GRPC_TLS_KEY  = "${NOMAD_SECRETS_DIR}/grpc-client-key.pem"
        # Workers come from the Consul catalog of every datacenter (one per
        # region), through the host's agent.
        OPENSANDBOX_REGISTRY = "consul"
        CONSUL_HTTP_ADDR     = "127.0.0.1:8500"
      }

      # The gRPC client certificate (Nomad variable opensandbox/grpc, written
      # by scripts/bootstrap-region.sh). Read by the process itself, so owned
      # by the image's user (65532, scripts/release).
      template {
        destination = "secrets/grpc-client.pem"
        change_mode = "noop" # re-read per handshake
        uid         = 65532
        gid         = 65532
        perms       = "0400"
        data        = <<-EOT
          {{- with nomadVar "opensandbox/grpc" }}{{ .client_cert_pem }}{{ end -}}
        EOT
      }

      template {
        destination = "secrets/grpc-client-key.pem"
        change_mode = "noop"
        uid         = 65532
        gid         = 65532
        perms       = "0400"
        data        = <<-EOT
          {{- with nomadVar "opensandbox/grpc" }}{{ .client_key_pem }}{{ end -}}
        EOT
      }

      template {
        destination = "secrets/controlplane.env"
        env         = true
        change_mode = "restart"
        splay       = "30s"
        data        = <<-EOT
          {{- with nomadVar "opensandbox/database" }}
          DATABASE_URL={{ .database_url | toJSON }}
          {{- end }}
          {{- with nomadVar "opensandbox/shared" }}
          OPENSANDBOX_JWT_SECRET={{ .jwt_secret | toJSON }}
          OPENSANDBOX_WORKER_SECRET={{ .worker_secret | toJSON }}
          {{- end }}
          {{- with nomadVar "opensandbox/metrics" }}
          OPENSANDBOX_METRICS_TOKEN={{ .token | toJSON }}
          {{- end }}
          {{- /* Its Consul ACL token (policy scripts/consul-acl/opensandbox-controlplane.hcl, put there by scripts/bootstrap-region.sh). */}}
          {{- with nomadVar "nomad/jobs/opensandbox-controlplane" }}{{ with .consul_token }}
          CONSUL_HTTP_TOKEN={{ . | toJSON }}
          {{- end }}{{ end }}
          {{- /* The web dashboard, only where the variable exists: nomadVar
               on a missing path blocks the template (and the task) forever. */}}
          {{- if nomadVarExists "opensandbox/workos" }}
          {{- with nomadVar "opensandbox/workos" }}
          WORKOS_CLIENT_ID={{ .client_id | toJSON }}
          WORKOS_API_KEY={{ .api_key | toJSON }}
          OPENSANDBOX_PUBLIC_URL={{ .public_url | toJSON }}
          {{- end }}
          {{- end }}
        EOT
      }

      template {
        destination = "local/controlplane.env"
        env         = true
        change_mode = "restart"
        splay       = "30s"
        data        = <<-EOT
          OPENSANDBOX_LOG_LEVEL={{ keyOrDefault "opensandbox/log_level" "info" }}
          OPENSANDBOX_WORKER_STALE_AFTER={{ keyOrDefault "opensandbox/controlplane/worker_stale_after" "15s" }}
          OPENSANDBOX_DEFAULT_TIMEOUT={{ keyOrDefault "opensandbox/worker/default_timeout" "300" }}
          OPENSANDBOX_REGION_FALLBACK={{ keyOrDefault "opensandbox/controlplane/region_fallback" "" }}
          OPENSANDBOX_AUTOSCALER={{ keyOrDefault "opensandbox/autoscaler/pool" "" }}
          OPENSANDBOX_EC2_ASGS={{ keyOrDefault "opensandbox/autoscaler/ec2_asgs" "" }}
          OPENSANDBOX_AUTOSCALER_MIN={{ keyOrDefault "opensandbox/autoscaler/min" "1" }}
          OPENSANDBOX_AUTOSCALER_MAX={{ keyOrDefault "opensandbox/autoscaler/max" "10" }}
        EOT
      }

      # NATS members from the Consul catalog, as NATS user controlplane with
      # its password from the Nomad variable nomad/jobs/opensandbox-controlplane
      # (only this job reads it). noop: the client learns the cluster's
      # other servers from NATS itself and reconnects among them with the
      # same credentials, so a member moving needs no restart.
      template {
        destination = "secrets/nats.env"
        env         = true
        change_mode = "noop"
        data        = <<-EOT
          {{- with nomadVar "nomad/jobs/opensandbox-controlplane" }}{{ $pw := .nats_password }}
          NATS_URL={{ range $i, $s := service "nats" }}{{ if $i }},{{ end }}nats://controlplane:{{ $pw }}@{{ $s.Address }}:{{ $s.Port }}{{ end }}
          {{- end }}
        EOT
      }

      resources {
        cpu    = 1000
        memory = 512
      }
    }
  }
}
