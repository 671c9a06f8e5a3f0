# Consul agents (one token per node role): register their node, read the
# catalog for DNS and joins.
node_prefix "" {
  policy = "write"
}
service_prefix "" {
  policy = "read"
}
