module github.com/opensandbox/opensandbox/services/e2e

go 1.26.0

require (
	github.com/jackc/pgx/v5 v5.7.6
	github.com/opensandbox/opensandbox/sdks/go v0.0.0
	github.com/opensandbox/opensandbox/services/shared v0.0.0
)

require (
	github.com/coder/websocket v1.8.15 // indirect
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/text v0.43.0 // indirect
)

replace (
	github.com/opensandbox/opensandbox/sdks/go => ../../sdks/go
	github.com/opensandbox/opensandbox/services/shared => ../shared
)
