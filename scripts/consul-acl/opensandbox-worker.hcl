# The worker process itself (Consul registry: OPENSANDBOX_REGISTRY=consul):
# its own service and checks.
service_prefix "opensandbox-worker" {
  policy = "write"
}
node_prefix "" {
  policy = "read"
}
agent_prefix "" {
  policy = "read"
}
