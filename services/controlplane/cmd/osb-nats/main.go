// Command osb-nats runs an embedded NATS server with JetStream for local
// development (`make infra-up`), so that no Docker or system package is
// needed. Production runs the real nats-server cluster.
//
// With credentials in its environment it accepts only them, each with its
// role's permissions (natsx.Permissions): NATS_URL is the control plane's
// (nats://controlplane:PASSWORD@host:port), NATS_WORKER_URL the workers' and
// NATS_SYNCER_URL the syncer's — the same variables `make infra-up` writes
// to .env.local and the Makefile hands to each binary.
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
	users := usersFromEnv()
	srv, err := natsx.StartEmbedded(natsx.EmbeddedOptions{Host: *host, Port: *port, StoreDir: *store, Users: users})
	if err != nil {
		fmt.Fprintln(os.Stderr, "osb-nats:", err)
		os.Exit(1)
	}
	auth := "no authentication"
	if len(users) > 0 {
		auth = fmt.Sprintf("%d users", len(users))
	}
	fmt.Println("osb-nats: JetStream on", srv.ClientURL(), "storing in", *store, "with", auth)
	<-ctx.Done()
	srv.Shutdown()
	srv.WaitForShutdown()
}

// usersFromEnv returns one user per role whose URL carries credentials.
func usersFromEnv() []natsx.User {
	var users []natsx.User
	for _, r := range []struct{ role, url string }{
		{natsx.RoleControlPlane, os.Getenv("NATS_URL")},
		{natsx.RoleWorker, os.Getenv("NATS_WORKER_URL")},
		{natsx.RoleSyncer, os.Getenv("NATS_SYNCER_URL")},
	} {
		if name, pw := natsx.UserFromURL(r.url); name != "" && pw != "" {
			users = append(users, natsx.User{Name: name, Password: pw, Role: r.role})
		}
	}
	return users
}
