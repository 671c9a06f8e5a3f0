# Read access to the PostgreSQL connection string (database_url), for the
# control plane and the syncer only; workers never see it.
namespace "default" {
  variables {
    path "opensandbox/database" {
      capabilities = ["read"]
    }
  }
}
