# Read access to the cluster's public TLS material (opensandbox/tls: the
# Nomad CA), for jobs that call Nomad's HTTPS API (Prometheus scrapes it).
namespace "default" {
  variables {
    path "opensandbox/tls" {
      capabilities = ["read"]
    }
  }
}
