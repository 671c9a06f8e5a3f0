// Command opensandbox-syncer moves sandbox events from NATS JetStream to
// PostgreSQL. The control plane can also run the same syncer in-process.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/opensandbox/opensandbox/services/shared/config"
	"github.com/opensandbox/opensandbox/services/shared/natsx"
	"github.com/opensandbox/opensandbox/services/shared/obs"
	"github.com/opensandbox/opensandbox/services/shared/pgschema"
	"github.com/opensandbox/opensandbox/services/syncer/syncer"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "opensandbox-syncer:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	e := &config.Env{}
	dbURL := e.String("DATABASE_URL", "")
	natsURL := e.String("NATS_URL", "")
	addr := net.JoinHostPort(e.String("OPENSANDBOX_HOST", "127.0.0.1"), e.String("OPENSANDBOX_SYNCER_PORT", "8090"))
	cfg := syncer.DefaultConfig()
	cfg.BatchSize = e.Int("OPENSANDBOX_SYNC_BATCH", cfg.BatchSize)
	cfg.MaxTries = e.Int("OPENSANDBOX_SYNC_MAX_TRIES", cfg.MaxTries)
	cfg.Stream = natsx.ConsumedStream(e.Int64("OPENSANDBOX_EVENTS_MAX_BYTES", natsx.DefaultEventsMaxBytes))
	logLevel := e.String("OPENSANDBOX_LOG_LEVEL", "info")
	if err := e.Err(); err != nil {
		return err
	}
	if dbURL == "" || natsURL == "" {
		return errors.New("DATABASE_URL and NATS_URL are required")
	}
	log := obs.NewLogger(os.Stderr, logLevel)

	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = pgschema.Check(cctx, pool)
	cancel()
	if err != nil {
		return fmt.Errorf("database schema: %w (the control plane applies migrations at start)", err)
	}
	nc, err := natsx.Connect(natsURL, "opensandbox-syncer", natsx.As(natsx.RoleSyncer), natsx.Log(log))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	reg := obs.NewRegistry()
	s := syncer.New(log, js, pool, cfg, syncer.NewMetrics(reg))

	srv := &http.Server{Addr: addr, Handler: s.Handler(reg), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("health server", "err", err)
		}
	}()
	log.Info("syncer started", "health", addr)
	err = s.Run(ctx)
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	srv.Shutdown(sctx)
	return err
}
