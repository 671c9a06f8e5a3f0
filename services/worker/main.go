// Command opensandbox-worker runs sandboxes for a control plane: the data-path
// HTTP API for SDKs (sandbox tokens), the SandboxWorker gRPC API for the
// control plane (shared secret) and heartbeats over NATS.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/opensandbox/opensandbox/services/worker/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := app.Main(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "opensandbox-worker:", err)
		os.Exit(1)
	}
}
