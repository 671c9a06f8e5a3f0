module github.com/opensandbox/opensandbox/services/e2e

go 1.26.0

require github.com/opensandbox/opensandbox/sdks/go v0.0.0

require github.com/coder/websocket v1.8.15 // indirect

replace github.com/opensandbox/opensandbox/sdks/go => ../../sdks/go
