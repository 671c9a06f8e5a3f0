# The control plane: reads the catalog of every datacenter (workers),
# holds the autoscaler's leader lock.
service_prefix "" {
  policy = "read"
}
node_prefix "" {
  policy = "read"
}
session_prefix "" {
  policy = "write"
}
key_prefix "opensandbox/autoscaler/" {
  policy = "write"
}
key_prefix "opensandbox/" {
  policy = "read"
}
