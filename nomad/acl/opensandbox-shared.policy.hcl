# Read access to the secrets the control plane and the workers share
# (jwt_secret, worker_secret). Attach it to the jobs that need them:
#   nomad acl policy apply -namespace default -job opensandbox-worker \
#     opensandbox-worker-shared acl/opensandbox-shared.policy.hcl
# and the same for opensandbox-controlplane (docs/deploy.md).
namespace "default" {
  variables {
    path "opensandbox/shared" {
      capabilities = ["read"]
    }
  }
}
