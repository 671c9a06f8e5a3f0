// Package e2e holds the tests that run the built binaries together, as a user
// would: a combined server on real Podman driven through the Go SDK. The load
// suite (TestNoOutputLostUnderLoad) runs in `make test`; the soak (`make soak`,
// cmd/osb-soak) adds faults and runs for minutes.
package e2e
