// Command opensandbox-server is the OpenSandbox API server. In combined mode
// (the default) it serves the whole REST API and runs the worker in-process.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/opensandbox/opensandbox/services/controlplane/internal/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := server.Main(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "opensandbox-server:", err)
		os.Exit(1)
	}
}
