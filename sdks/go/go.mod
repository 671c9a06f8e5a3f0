module github.com/opensandbox/opensandbox/sdks/go

go 1.26.0

require (
	github.com/coder/websocket v1.8.15
	golang.org/x/term v0.36.0
)

require golang.org/x/sys v0.37.0 // indirect
