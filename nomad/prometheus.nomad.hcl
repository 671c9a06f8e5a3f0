# prometheus: scrapes the control plane, workers, syncer, node_exporter and
# Nomad through Consul service discovery and evaluates the alert rules.
# Run `nomad job run` from this directory: file() reads the configuration
# from observability/ relative to it.

variable "region" {
  description = "Nomad region (equal to the AWS region)."
  type        = string
}

variable "datacenters" {
  description = "Nomad datacenters to place Prometheus in."
  type        = list(string)
  default     = ["*"]
}

variable "image" {
  description = "Prometheus image."
  type        = string
  default     = "docker.io/prom/prometheus:v3.5.0"
}

variable "retention" {
  description = "How long Prometheus keeps samples."
  type        = string
  default     = "15d"
}

job "prometheus" {
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
    healthy_deadline = "5m"
    auto_revert      = true
  }

  group "prometheus" {
    count = 1

    restart {
      attempts = 3
      interval = "5m"
      delay    = "15s"
      mode     = "delay"
    }

    # The TSDB stays on the host it was written on.
    volume "data" {
      type   = "host"
      source = "prometheus-data"
    }

    network {
      mode = "host"
      port "http" {
        static = 9091 # 9090 is the workers' gRPC port
      }
    }

    service {
      name     = "prometheus"
      port     = "http"
      provider = "consul"
      tags     = ["http"]

      check {
        name     = "healthy"
        type     = "http"
        path     = "/-/healthy"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "prometheus" {
      driver = "podman"
      # Prometheus flushes its head block on SIGTERM; large heads take a while.
      kill_signal  = "SIGTERM"
      kill_timeout = "30s"

      volume_mount {
        volume      = "data"
        destination = "/prometheus"
      }

      config {
        image        = var.image
        network_mode = "host"
        args = [
          "--config.file=/local/prometheus.yml",
          "--storage.tsdb.path=/prometheus",
          "--storage.tsdb.retention.time=${var.retention}",
          "--web.listen-address=0.0.0.0:${NOMAD_PORT_http}",
          "--web.enable-lifecycle",
        ]
      }

      template {
        destination   = "local/prometheus.yml"
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data          = file("observability/prometheus.yml")
      }

      # The rules use Prometheus's own {{ }} templating in annotations, so
      # consul-template gets other delimiters here.
      template {
        destination     = "local/rules/opensandbox.rules.yml"
        change_mode     = "signal"
        change_signal   = "SIGHUP"
        left_delimiter  = "[["
        right_delimiter = "]]"
        data            = file("observability/rules/opensandbox.rules.yml")
      }

      # Scrape credential: the metrics-only bearer token that the control
      # plane and the workers accept on /metrics (OPENSANDBOX_METRICS_TOKEN)
      # and that opens nothing else; Prometheus holds neither an API key nor
      # the cluster secret.
      # Read by Prometheus itself, which runs as nobody (65534) in its image:
      # the file must be its own, not root's.
      template {
        destination = "secrets/metrics_token"
        change_mode = "noop" # read on every scrape
        uid         = 65534
        gid         = 65534
        perms       = "0400"
        data        = <<-EOT
          {{- with nomadVar "opensandbox/metrics" }}{{ .token }}{{ end -}}
        EOT
      }

      # Consul is default-deny: service discovery reads the catalog with the
      # prometheus role's token (scripts/bootstrap-region.sh makes it).
      template {
        destination = "secrets/consul_token"
        change_mode = "noop"
        uid         = 65534
        gid         = 65534
        perms       = "0400"
        data        = <<-EOT
          {{- with nomadVar "nomad/jobs/prometheus" }}{{ .consul_token }}{{ end -}}
        EOT
      }

      # Nomad's HTTP API is TLS: the cluster CA verifies it (public, but
      # kept beside the other TLS material in the Nomad variable).
      template {
        destination = "secrets/nomad-ca.pem"
        change_mode = "noop"
        uid         = 65534
        gid         = 65534
        perms       = "0400"
        data        = <<-EOT
          {{- with nomadVar "opensandbox/tls" }}{{ .nomad_ca_pem }}{{ end -}}
        EOT
      }

      resources {
        cpu    = 1000
        memory = 4096
      }
    }
  }
}
