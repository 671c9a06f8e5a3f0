package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	consulapi "github.com/hashicorp/consul/api"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/cluster"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/consulwatch"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/keyauth"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/placement"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/registry"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/store"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/workerclient"
	"github.com/opensandbox/opensandbox/services/shared/auth"
	"github.com/opensandbox/opensandbox/services/shared/grpcx"
	"github.com/opensandbox/opensandbox/services/shared/httpx"
	"github.com/opensandbox/opensandbox/services/shared/natsx"
	"github.com/opensandbox/opensandbox/services/shared/obs"
	"github.com/opensandbox/opensandbox/services/shared/proto/workerv1"
	"github.com/opensandbox/opensandbox/services/worker/app"
	"github.com/prometheus/client_golang/prometheus"
)

func runServer(ctx context.Context, log *slog.Logger, cfg Config) error {
	st, err := store.Open(ctx, cfg.DatabaseURL, cfg.Migrate)
	if err != nil {
		return err
	}
	defer st.Close()
	nc, err := natsx.Connect(cfg.NATSURL, "opensandbox-server", natsx.As(natsx.RoleControlPlane), natsx.Log(log))
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	defer nc.Close()
	if cfg.Registry == app.RegistryConsul {
		if cfg.Consul, err = consulapi.NewClient(consulapi.DefaultConfig()); err != nil {
			return fmt.Errorf("consul: %w", err)
		}
	}
	reg := obs.NewRegistry()
	app, err := StartServer(ctx, log, reg, st, nc, cfg)
	if err != nil {
		return err
	}
	go sweepSessions(ctx, log, st)
	return Serve(ctx, log, app, cfg.Addr, ModeServer)
}

// StartServer wires the server-mode control plane: the worker registry fed
// by heartbeats on nc (swept until ctx ends), placement and gRPC to the
// workers, and the REST API. It serves no data-path route.
func StartServer(ctx context.Context, log *slog.Logger, reg *prometheus.Registry, st *store.Store, nc *nats.Conn, cfg Config) (*fiber.App, error) {
	tokens, err := auth.NewSandboxTokens(cfg.JWTSecret)
	if err != nil {
		return nil, err
	}
	pg := newPGParts(log, reg, st, cfg)
	dial := grpcx.DialOptions{Secret: cfg.WorkerSecret, Metrics: grpcx.NewMetrics(reg, "client")}
	if cfg.GRPCTLS.Enabled() {
		if dial.Transport, err = grpcx.ClientCreds(cfg.GRPCTLS); err != nil {
			return nil, err
		}
	}
	pool := workerclient.New(dial)
	// A worker dropped and back at once must not have its reconcile run
	// before the drop's bookkeeping: one at a time.
	var lifecycle sync.Mutex
	consulRegistry := cfg.Registry == app.RegistryConsul
	if consulRegistry && cfg.Consul == nil {
		return nil, errors.New("the Consul registry needs a Consul client")
	}
	workers := registry.New(log, registry.Config{
		StaleAfter: cfg.StaleAfter,
		External:   consulRegistry,
		OnDrop: func(w registry.Worker) {
			lifecycle.Lock()
			defer lifecycle.Unlock()
			pool.Forget(w.GRPCAddr)
			dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			msg := fmt.Sprintf("worker %s lost: %s", w.ID, w.Lost)
			n, err := st.FailWorkerSessions(dctx, w.ID, msg)
			if err != nil {
				log.Error("fail the sessions of a lost worker", "worker_id", w.ID, "err", err)
			}
			st.MarkWorkerStale(dctx, w.ID)
			log.Warn("sessions of a lost worker marked error", "worker_id", w.ID, "sessions", n)
		},
		OnJoin: func(w registry.Worker) {
			lifecycle.Lock()
			defer lifecycle.Unlock()
			reconcileWorker(ctx, log, st, pool, w)
		},
	}, registry.NewMetrics(reg))
	sub, err := workers.Subscribe(nc)
	if err != nil {
		return nil, fmt.Errorf("subscribe to heartbeats: %w", err)
	}
	go func() {
		<-ctx.Done()
		sub.Unsubscribe()
		pool.Close()
	}()
	go workers.Run(ctx, time.Second)
	if consulRegistry {
		go consulwatch.New(log, cfg.Consul, workers, consulwatch.Config{}, consulwatch.NewMetrics(reg)).Run(ctx)
	}
	go recordWorkers(ctx, log, st, workers)

	if err := announceRevocations(ctx, log, reg, st, nc, cfg.revocationInterval()); err != nil {
		return nil, err
	}

	scaler, err := startAutoscaler(ctx, log, reg, st, workers, pool, cfg.Autoscaler)
	if err != nil {
		return nil, fmt.Errorf("autoscaler: %w", err)
	}
	capi := cluster.New(log, cluster.Config{DefaultRegion: cfg.DefaultRegion, RegionFallback: cfg.RegionFallback}, pg.tracker, st, workers, pool, tokens,
		placement.New(placement.DefaultK, uint64(time.Now().UnixNano())), cluster.NewMetrics(reg))
	app := httpx.NewApp(log, httpx.NewMetrics(reg))
	ev := &events{log: log, nc: nc, stream: cfg.eventStream()}
	if cfg.RunSyncer {
		// The control plane consumes the workers' events itself unless a
		// separate opensandbox-syncer does (OPENSANDBOX_RUN_SYNCER=false);
		// the syncer stops with ctx.
		if ev.js, err = jetstream.New(nc); err != nil {
			return nil, err
		}
		ev.sync(ctx, reg, st.Pool())
	}
	app.Get("/health", healthHandler("control-plane", ev, func(c *fiber.Ctx) bool {
		return auth.Carries(c, cfg.MetricsToken) || pg.authn.Valid(c)
	}))
	pg.mountDashboard(app, capi.MountLifecycle)
	keyed := keyedWithMetrics(app, pg.authn.Middleware(), reg, cfg.MetricsToken)
	keyed.Get("/sessions", pg.tracker.Handler())
	keyed.Get("/autoscaler", keyauth.RequireScope(keyauth.ScopeAdmin), autoscalerHandler(scaler))
	capi.Mount(keyed)
	return app, nil
}

// announceRevocations sends the list of revoked API keys to the workers
// every interval and whenever one asks, until ctx ends.
func announceRevocations(ctx context.Context, log *slog.Logger, reg prometheus.Registerer, st *store.Store, nc *nats.Conn, interval time.Duration) error {
	ann := keyauth.NewAnnouncer(log, reg, st, interval, func(l auth.RevocationList) error {
		b, err := json.Marshal(l)
		if err != nil {
			return err
		}
		return nc.Publish(natsx.KeysRevokedSubj, b)
	})
	sub, err := nc.Subscribe(natsx.KeysRevokedSyncSubj, func(*nats.Msg) { ann.Ask() })
	if err != nil {
		return fmt.Errorf("subscribe to revocation-list requests: %w", err)
	}
	go func() {
		ann.Run(ctx)
		sub.Unsubscribe()
	}()
	return nil
}

// reconcileWorker runs when a worker joins the registry (new, back after
// being dropped, or seen first after a control-plane restart): it lists the
// sandboxes the worker really runs and revives or ends their sessions to
// match, so a worker restart that outlasted the stale timeout does not leave
// live sandboxes marked error.
func reconcileWorker(ctx context.Context, log *slog.Logger, st *store.Store, pool *workerclient.Pool, w registry.Worker) {
	cl, err := pool.Client(w.GRPCAddr)
	if err != nil {
		log.Warn("reconcile sessions: no client for the worker", "worker_id", w.ID, "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	listedAt := time.Now()
	resp, err := cl.ListSandboxes(ctx, &workerv1.ListSandboxesRequest{})
	if err != nil {
		log.Warn("reconcile sessions: list the worker's sandboxes", "worker_id", w.ID, "err", err)
		return
	}
	alive := make([]string, 0, len(resp.GetSandboxes()))
	for _, sb := range resp.GetSandboxes() {
		alive = append(alive, sb.GetSandboxId())
	}
	revived, ended, err := st.ReconcileWorker(ctx, w.ID, alive, listedAt)
	if err != nil {
		log.Error("reconcile sessions", "worker_id", w.ID, "err", err)
		return
	}
	if revived+ended > 0 {
		log.Info("sessions reconciled with the worker", "worker_id", w.ID, "alive", len(alive), "revived", revived, "ended", ended)
	}
}

// recordWorkers copies the registry into the workers table every few
// seconds, away from the heartbeat path: a slow database never delays beats
// (and so never makes a worker look stale).
func recordWorkers(ctx context.Context, log *slog.Logger, st *store.Store, reg *registry.Registry) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, w := range reg.List() {
			wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err := st.UpsertWorker(wctx, store.Worker{ID: w.ID, Region: w.Region, GRPCAddr: w.GRPCAddr, HTTPAddr: w.HTTPAddr,
				Capacity: w.Capacity, Current: w.Current, LastHeartbeat: w.LastSeen})
			cancel()
			if err != nil {
				log.Warn("record worker", "worker_id", w.ID, "err", err)
				break
			}
		}
	}
}
