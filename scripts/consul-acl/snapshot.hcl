# Raft snapshots (ansible/roles/raft_snapshots): Consul requires acl=write
# for snapshot save; the lock needs a session and its key.
acl = "write"
session_prefix "" {
  policy = "write"
}
key "opensandbox/snapshot-lock" {
  policy = "write"
}
key_prefix "opensandbox/snapshot-lock/" {
  policy = "write"
}
