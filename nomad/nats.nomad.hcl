# nats: a three-node NATS cluster with JetStream per region, one server per
# control-group host. Workers publish heartbeats (core NATS) and sandbox
# events (stream SANDBOX_EVENTS, replicated by JetStream); the control plane
# and the syncer consume them. Clients find the servers through the Consul
# service "nats" (nats.service.consul).
#
# Every client authenticates: one user per role, each allowed only what its
# work needs (the same permissions as natsx.Permissions in the code, which
# the deploycheck tests compare). A sandbox that reaches port 4222 through
# its worker's address has no credential and is refused; a worker identity
# can publish only its region's events and heartbeats (and ask for the list
# of revoked API keys), read nothing but the replies to its own requests and
# that list, and neither create nor consume the streams.
# The server holds only bcrypt hashes (Nomad variable nomad/jobs/nats); each
# service reads its own password from nomad/jobs/<its job> (docs/deploy.md).

variable "region" {
  description = "Nomad region (equal to the AWS region)."
  type        = string
}

variable "datacenters" {
  description = "Nomad datacenters to place NATS in."
  type        = list(string)
  default     = ["*"]
}

variable "image" {
  description = "NATS server image (2.10 or newer for JetStream clustering as configured)."
  type        = string
  default     = "docker.io/library/nats:2.10-alpine"
}

job "nats" {
  region      = var.region
  datacenters = var.datacenters
  type        = "service"

  constraint {
    attribute = "${node.class}"
    value     = "control"
  }

  # One server at a time keeps the JetStream meta group and the stream
  # replicas at quorum (2 of 3) through a rolling update.
  update {
    max_parallel     = 1
    health_check     = "checks"
    min_healthy_time = "30s"
    healthy_deadline = "5m"
    auto_revert      = true
  }

  group "nats" {
    count = 3

    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    restart {
      attempts = 5
      interval = "10m"
      delay    = "15s"
      mode     = "delay"
    }

    volume "data" {
      type   = "host"
      source = "nats-data"
    }

    network {
      mode = "host"
      port "client" {
        static = 4222
      }
      port "cluster" {
        static = 6222
      }
      port "monitor" {
        static = 8222
      }
    }

    service {
      name     = "nats"
      port     = "client"
      provider = "consul"
      tags     = ["client"]

      check {
        name     = "healthz"
        type     = "http"
        port     = "monitor"
        path     = "/healthz"
        interval = "10s"
        timeout  = "2s"
      }
    }

    service {
      name     = "nats-cluster"
      port     = "cluster"
      provider = "consul"
      tags     = ["cluster"]

      check {
        name     = "route-port"
        type     = "tcp"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "nats" {
      driver = "podman"
      # Lame-duck mode: stop accepting, spread clients over the other servers
      # for 20s, then exit. 30s covers it.
      kill_signal  = "SIGUSR2"
      kill_timeout = "30s"

      volume_mount {
        volume      = "data"
        destination = "/data"
      }

      config {
        image        = var.image
        args         = ["--config", "/local/nats.conf"]
        network_mode = "host"
      }

      # Routes come from the Consul catalog; NATS reloads them on SIGHUP, so
      # members joining later are added without a restart.
      template {
        destination   = "local/nats.conf"
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data          = <<-EOT
          # Stable across host replacement: the allocation index (0-2) is
          # reused by the replacement allocation, so JetStream sees the same
          # peer come back (and catches it up) instead of a new one beside a
          # dead one. docs/deploy.md, "NATS peers".
          server_name: "nats-{{ env "NOMAD_ALLOC_INDEX" }}"
          listen: "0.0.0.0:{{ env "NOMAD_PORT_client" }}"
          http: "0.0.0.0:{{ env "NOMAD_PORT_monitor" }}"
          lame_duck_duration: "20s"
          lame_duck_grace_period: "5s"
          max_payload: 8MB

          jetstream {
            store_dir: "/data"
            max_file_store: 100GB
          }

          {{- with nomadVar "nomad/jobs/nats" }}
          authorization {
            users: [
              {
                user: "controlplane"
                password: "{{ .controlplane_password_bcrypt }}"
                permissions: {
                  publish: { allow: ["sandbox.events.>", "sandbox.deadletter", "$JS.API.>", "$JS.ACK.SANDBOX_EVENTS.>", "keys.revoked"] }
                  subscribe: { allow: ["_INBOX.controlplane.>", "workers.heartbeat.>", "keys.revoked.sync"] }
                }
              }
              {
                user: "worker"
                password: "{{ .worker_password_bcrypt }}"
                permissions: {
                  publish: { allow: ["sandbox.events.{{ env "NOMAD_REGION" }}.*", "workers.heartbeat.{{ env "NOMAD_REGION" }}.*", "$JS.API.STREAM.INFO.SANDBOX_EVENTS", "keys.revoked.sync"] }
                  subscribe: { allow: ["_INBOX.worker.>", "keys.revoked"] }
                }
              }
              {
                user: "syncer"
                password: "{{ .syncer_password_bcrypt }}"
                permissions: {
                  publish: { allow: ["$JS.API.STREAM.INFO.SANDBOX_EVENTS", "$JS.API.STREAM.CREATE.SANDBOX_EVENTS", "$JS.API.STREAM.INFO.SANDBOX_DEADLETTER", "$JS.API.STREAM.CREATE.SANDBOX_DEADLETTER", "$JS.API.CONSUMER.>", "$JS.ACK.SANDBOX_EVENTS.>", "sandbox.deadletter"] }
                  subscribe: { allow: ["_INBOX.syncer.>"] }
                }
              }
            ]
          }
          {{- end }}

          cluster {
            name: "opensandbox-{{ env "NOMAD_REGION" }}"
            listen: "0.0.0.0:{{ env "NOMAD_PORT_cluster" }}"
            routes: [
          {{- range service "nats-cluster" }}
              "nats://{{ .Address }}:{{ .Port }}"
          {{- end }}
            ]
          }
        EOT
      }

      resources {
        cpu    = 1000
        memory = 2048
      }
    }
  }
}
