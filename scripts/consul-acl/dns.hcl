# The agents' default token: what anonymous DNS lookups (*.service.consul
# through systemd-resolved) may see.
node_prefix "" {
  policy = "read"
}
service_prefix "" {
  policy = "read"
}
query_prefix "" {
  policy = "read"
}
