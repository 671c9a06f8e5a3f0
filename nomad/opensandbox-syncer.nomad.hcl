# opensandbox-syncer: JetStream (SANDBOX_EVENTS, durable pull consumer
# pg-sync-consumer) -> PostgreSQL. It creates the streams when they are
# missing (workers may only look them up): SANDBOX_EVENTS as a work queue
# that refuses events when full (OPENSANDBOX_EVENTS_MAX_BYTES), so nothing
# unwritten is ever dropped, and SANDBOX_DEADLETTER beside it. Two allocations fetch from the same pull
# consumer, so either can die without the backlog stalling; writes are
# idempotent on the event id. The syncer checks the schema at start and
# refuses an old one: run it after the control plane has migrated.

variable "region" {
  description = "Nomad region (equal to the AWS region)."
  type        = string
}

variable "datacenters" {
  description = "Nomad datacenters to place the syncer in."
  type        = list(string)
  default     = ["*"]
}

variable "image" {
  description = "The syncer's image of the release, pinned by digest: <registry>/syncer@sha256:... (make release prints it)."
  type        = string

  validation {
    condition     = can(regex("@sha256:[0-9a-f]{64}$", var.image))
    error_message = "image must be pinned by digest (...@sha256:<64 hex>)."
  }
}

job "opensandbox-syncer" {
  region      = var.region
  datacenters = var.datacenters
  type        = "service"

  constraint {
    attribute = "${node.class}"
    value     = "control"
  }

  update {
    max_parallel     = 1
    health_check     = "checks"
    min_healthy_time = "10s"
    healthy_deadline = "3m"
    auto_revert      = true
  }

  group "syncer" {
    count = 2

    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    restart {
      attempts = 5
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
        static = 8090
      }
    }

    # /health answers 503 while PostgreSQL or NATS fail; a restart would not
    # fix either, so the check only takes the syncer out of the catalog (no
    # check_restart) and the alerts say why.
    service {
      name     = "opensandbox-syncer"
      port     = "http"
      provider = "consul"
      tags     = ["http", "metrics"]

      check {
        name     = "health"
        type     = "http"
        path     = "/health"
        interval = "10s"
        timeout  = "3s"
      }
    }

    task "syncer" {
      driver      = "podman"
      kill_signal = "SIGTERM"
      # On SIGTERM the fetch loop stops (100 ms fetches), unacked batches are
      # abandoned to redelivery, then the health server gets 5s to close.
      kill_timeout = "10s"

      config {
        image           = var.image
        network_mode    = "host"
        readonly_rootfs = true
        cap_drop        = ["ALL"]
      }

      env {
        OPENSANDBOX_HOST        = "${NOMAD_IP_http}"
        OPENSANDBOX_SYNCER_PORT = "${NOMAD_PORT_http}"
      }

      template {
        destination = "secrets/syncer.env"
        env         = true
        change_mode = "restart"
        data        = <<-EOT
          {{- with nomadVar "opensandbox/database" }}
          DATABASE_URL={{ .database_url | toJSON }}
          {{- end }}
        EOT
      }

      template {
        destination = "local/syncer.env"
        env         = true
        change_mode = "restart"
        data        = <<-EOT
          OPENSANDBOX_SYNC_BATCH={{ keyOrDefault "opensandbox/syncer/batch" "100" }}
          OPENSANDBOX_SYNC_MAX_TRIES={{ keyOrDefault "opensandbox/syncer/max_tries" "5" }}
          OPENSANDBOX_EVENTS_MAX_BYTES={{ keyOrDefault "opensandbox/events/max_bytes" "10737418240" }}
          OPENSANDBOX_LOG_LEVEL={{ keyOrDefault "opensandbox/log_level" "info" }}
        EOT
      }

      # NATS members from the Consul catalog, as NATS user syncer with
      # its password from the Nomad variable nomad/jobs/opensandbox-syncer
      # (only this job reads it). noop: the client learns the cluster's
      # other servers from NATS itself and reconnects among them with the
      # same credentials, so a member moving needs no restart.
      template {
        destination = "secrets/nats.env"
        env         = true
        change_mode = "noop"
        data        = <<-EOT
          {{- with nomadVar "nomad/jobs/opensandbox-syncer" }}{{ $pw := .nats_password }}
          NATS_URL={{ range $i, $s := service "nats" }}{{ if $i }},{{ end }}nats://syncer:{{ $pw }}@{{ $s.Address }}:{{ $s.Port }}{{ end }}
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
