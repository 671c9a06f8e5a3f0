// Command osb-nats runs an embedded NATS server with JetStream for local
// development (`make infra-up`), so that no Docker or system package is
// needed. Production runs the real nats-server cluster.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/opensandbox/opensandbox/services/shared/natsx"
)

func main() {
	host := flag.String("host", "127.0.0.1", "listen host")
	port := flag.Int("port", 4222, "listen port")
	store := flag.String("store", ".data/nats", "JetStream storage directory")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	srv, err := natsx.StartEmbedded(natsx.EmbeddedOptions{Host: *host, Port: *port, StoreDir: *store})
	if err != nil {
		fmt.Fprintln(os.Stderr, "osb-nats:", err)
		os.Exit(1)
	}
	fmt.Println("osb-nats: JetStream on", srv.ClientURL(), "storing in", *store)
	<-ctx.Done()
	srv.Shutdown()
	srv.WaitForShutdown()
}
