# Read access to the web dashboard's WorkOS credentials (client_id, api_key)
# and the public URL browsers come back to, for the control plane only.
namespace "default" {
  variables {
    path "opensandbox/workos" {
      capabilities = ["read"]
    }
  }
}
