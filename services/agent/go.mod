module github.com/opensandbox/opensandbox/services/agent

go 1.26.0

require github.com/opensandbox/opensandbox/services/shared v0.0.0

replace github.com/opensandbox/opensandbox/services/shared => ../shared
