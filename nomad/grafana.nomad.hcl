# grafana: dashboards provisioned from observability/grafana (overview and
# per-worker), Prometheus found through Consul. Run `nomad job run` from this
# directory (file() paths are relative to it).

variable "region" {
  description = "Nomad region (equal to the AWS region)."
  type        = string
}

variable "datacenters" {
  description = "Nomad datacenters to place Grafana in."
  type        = list(string)
  default     = ["*"]
}

variable "image" {
  description = "Grafana image."
  type        = string
  default     = "docker.io/grafana/grafana-oss:11.6.0"
}

job "grafana" {
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

  group "grafana" {
    count = 1

    restart {
      attempts = 3
      interval = "5m"
      delay    = "15s"
      mode     = "delay"
    }

    # Users and preferences live in Grafana's SQLite; dashboards are
    # provisioned, so losing this disk loses nothing that matters.
    ephemeral_disk {
      size    = 1024
      sticky  = true
      migrate = true
    }

    network {
      mode = "host"
      port "http" {
        static = 3000
      }
    }

    service {
      name     = "grafana"
      port     = "http"
      provider = "consul"
      tags     = ["http"]

      check {
        name     = "health"
        type     = "http"
        path     = "/api/health"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "grafana" {
      driver       = "podman"
      kill_signal  = "SIGTERM"
      kill_timeout = "15s"

      config {
        image        = var.image
        network_mode = "host"
      }

      env {
        GF_SERVER_HTTP_PORT            = "${NOMAD_PORT_http}"
        GF_PATHS_DATA                  = "/alloc/data/grafana"
        GF_PATHS_PROVISIONING          = "/local/provisioning"
        GF_AUTH_ANONYMOUS_ENABLED      = "false"
        GF_ANALYTICS_REPORTING_ENABLED = "false"
        GF_USERS_ALLOW_SIGN_UP         = "false"
      }

      template {
        destination = "secrets/grafana.env"
        env         = true
        change_mode = "restart"
        data        = <<-EOT
          {{- with nomadVar "nomad/jobs/grafana" }}
          GF_SECURITY_ADMIN_PASSWORD={{ .admin_password | toJSON }}
          {{- end }}
        EOT
      }

      template {
        destination = "local/provisioning/datasources/prometheus.yml"
        change_mode = "restart"
        data        = file("observability/grafana/provisioning/datasources.yml")
      }

      template {
        destination = "local/provisioning/dashboards/opensandbox.yml"
        change_mode = "noop"
        data        = file("observability/grafana/provisioning/dashboards.yml")
      }

      # Dashboards use Grafana's own {{ }} legends; consul-template must not
      # touch them, so its delimiters are set to something they never contain.
      template {
        destination     = "local/dashboards/opensandbox-overview.json"
        change_mode     = "noop" # Grafana rescans the folder
        left_delimiter  = "[[%"
        right_delimiter = "%]]"
        data            = file("observability/grafana/dashboards/opensandbox-overview.json")
      }

      template {
        destination     = "local/dashboards/opensandbox-worker.json"
        change_mode     = "noop"
        left_delimiter  = "[[%"
        right_delimiter = "%]]"
        data            = file("observability/grafana/dashboards/opensandbox-worker.json")
      }

      resources {
        cpu    = 500
        memory = 512
      }
    }
  }
}
