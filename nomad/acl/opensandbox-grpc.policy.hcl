# Read access to the control plane <-> worker mutual TLS material
# (opensandbox/grpc): the workers read the client CA, the control plane its
# client certificate and key. scripts/bootstrap-region.sh attaches it to
# opensandbox-worker and opensandbox-controlplane.
namespace "default" {
  variables {
    path "opensandbox/grpc" {
      capabilities = ["read"]
    }
  }
}
