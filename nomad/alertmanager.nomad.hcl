# alertmanager: receives the alerts Prometheus evaluates
# (observability/rules/) and routes them by severity to the receivers in
# the Nomad variable nomad/jobs/alertmanager (observability/alertmanager.yml).
# Prometheus finds it through Consul. Run `nomad job run` from this
# directory (file() paths are relative to it).

variable "region" {
  description = "Nomad region (equal to the AWS region)."
  type        = string
}

variable "datacenters" {
  description = "Nomad datacenters to place Alertmanager in."
  type        = list(string)
  default     = ["*"]
}

variable "image" {
  description = "Alertmanager image."
  type        = string
  default     = "docker.io/prom/alertmanager:v0.28.1"
}

job "alertmanager" {
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

  group "alertmanager" {
    count = 1

    restart {
      attempts = 3
      interval = "5m"
      delay    = "15s"
      mode     = "delay"
    }

    # Silences and the notification log; losing them re-sends open alerts.
    ephemeral_disk {
      size    = 256
      sticky  = true
      migrate = true
    }

    network {
      mode = "host"
      port "http" {
        static = 9093
      }
    }

    service {
      name     = "alertmanager"
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

    task "alertmanager" {
      driver       = "podman"
      kill_signal  = "SIGTERM"
      kill_timeout = "15s"

      config {
        image        = var.image
        network_mode = "host"
        args = [
          "--config.file=/secrets/alertmanager.yml",
          "--storage.path=/alloc/data/alertmanager",
          "--web.listen-address=${NOMAD_IP_http}:${NOMAD_PORT_http}",
          "--cluster.listen-address=", # one instance: no gossip port
        ]
      }

      # Receivers carry webhook credentials; Alertmanager runs as nobody
      # (65534) in its image and must own the file. [[ ]] delimiters:
      # Alertmanager's own templates use {{ }}.
      template {
        destination     = "secrets/alertmanager.yml"
        change_mode     = "signal"
        change_signal   = "SIGHUP"
        uid             = 65534
        gid             = 65534
        perms           = "0400"
        left_delimiter  = "[["
        right_delimiter = "]]"
        data            = file("observability/alertmanager.yml")
      }

      resources {
        cpu    = 200
        memory = 256
      }
    }
  }
}
