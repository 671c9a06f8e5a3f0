// Package bench holds `make bench`: latency of OpenSandbox beside raw Podman,
// both measured in the same run on the same machine. See bench_test.go.
package bench
