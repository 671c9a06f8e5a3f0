# Nomad clients of the workers: they may register the worker's services
# and nothing else, so a compromised worker host cannot announce a fake
# "nats" (or any control-group service) to collect credentials.
agent_prefix "" {
  policy = "read"
}
node_prefix "" {
  policy = "write"
}
service_prefix "" {
  policy = "read"
}
service_prefix "opensandbox-worker" {
  policy = "write"
}
service "nomad-client" {
  policy = "write"
}
service "node-exporter" {
  policy = "write"
}
key_prefix "opensandbox/" {
  policy = "read"
}
