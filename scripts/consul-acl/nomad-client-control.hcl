# Nomad clients of the control group: register the control group's
# services, and let templates read the tunables and the catalog.
agent_prefix "" {
  policy = "read"
}
node_prefix "" {
  policy = "write"
}
service_prefix "" {
  policy = "read"
}
service "nats" {
  policy = "write"
}
service "nats-cluster" {
  policy = "write"
}
service_prefix "opensandbox-controlplane" {
  policy = "write"
}
service_prefix "opensandbox-syncer" {
  policy = "write"
}
service "prometheus" {
  policy = "write"
}
service "grafana" {
  policy = "write"
}
service "alertmanager" {
  policy = "write"
}
service_prefix "nomad" {
  policy = "write"
}
service "node-exporter" {
  policy = "write"
}
key_prefix "opensandbox/" {
  policy = "read"
}
