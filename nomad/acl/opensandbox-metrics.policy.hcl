# Read access to the metrics-only bearer token (opensandbox/metrics, key
# token): the control plane and the workers accept it on /metrics, and
# Prometheus presents it. It opens nothing else, so Prometheus — whose
# scrapes travel in plaintext inside the VPC — never holds an API key or the
# cluster secret.
#   nomad acl policy apply -namespace default -job prometheus \
#     prometheus-metrics acl/opensandbox-metrics.policy.hcl
# and the same for opensandbox-worker and opensandbox-controlplane.
namespace "default" {
  variables {
    path "opensandbox/metrics" {
      capabilities = ["read"]
    }
  }
}
