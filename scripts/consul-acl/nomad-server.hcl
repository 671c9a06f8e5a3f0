# Nomad servers (Nomad's documented minimum for servers).
agent_prefix "" {
  policy = "read"
}
node_prefix "" {
  policy = "write"
}
service_prefix "" {
  policy = "write"
}
key_prefix "opensandbox/" {
  policy = "read"
}
acl = "write"
