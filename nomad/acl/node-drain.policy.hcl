# Token for the workers' drain watcher (ansible/roles/worker_drain): it may
# drain nodes and nothing else. Create it once per region and store it as the
# SSM SecureString <ssm_prefix>/nomad_drain_token:
#   nomad acl policy apply node-drain acl/node-drain.policy.hcl
#   nomad acl token create -name worker-drain -policy node-drain
node {
  policy = "write"
}
