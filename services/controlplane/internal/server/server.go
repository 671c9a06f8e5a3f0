package server

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/admin"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/dashboard"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/keyauth"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/sessions"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/store"
	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/shared/auth"
	"github.com/opensandbox/opensandbox/services/shared/httpx"
	"github.com/opensandbox/opensandbox/services/shared/obs"
	"github.com/opensandbox/opensandbox/services/worker/app"
	"github.com/opensandbox/opensandbox/services/worker/httpapi"
	"github.com/opensandbox/opensandbox/services/worker/sandbox"
	"github.com/prometheus/client_golang/prometheus"
)

// Main runs `opensandbox-server [admin ...]`: the admin command line, or the
// server in the configured mode until ctx ends.
func Main(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "admin" {
		return admin.Run(ctx, args[1:], os.Stdout)
	}
	if len(args) > 0 {
		return fmt.Errorf("unknown command %q (want no argument, or admin)", args[0])
	}
	cfg, err := LoadConfig()
	if err != nil {
		return err
	}
	log := obs.NewLogger(os.Stderr, cfg.LogLevel).With("service", "opensandbox-server", "mode", cfg.Mode)
	if err := obs.ServeDebug(log, os.Getenv("OPENSANDBOX_DEBUG_ADDR")); err != nil {
		return err
	}
	if cfg.Mode == ModeServer {
		return runServer(ctx, log, cfg)
	}
	return runCombined(ctx, log, cfg)
}

func runCombined(ctx context.Context, log *slog.Logger, cfg Config) error {
	reg := obs.NewRegistry()
	// Events always flow into JetStream (embedded unless NATS_URL is set);
	// they reach PostgreSQL only when it is configured.
	ev, err := startEvents(log, cfg.NATSURL, cfg.Sandbox.DataDir, cfg.eventStream())
	if err != nil {
		return err
	}
	defer ev.Close()
	if err := ev.publish(ctx, reg, cfg.Sandbox.DataDir, cfg.Sandbox.Region, cfg.Sandbox.WorkerID, cfg.EventsPerMessage); err != nil {
		return err
	}
	cfg.Sandbox.RetainEvents = true
	cfg.Sandbox.OnEvent = ev.pub.Notify
	var pg *pgParts
	if cfg.DatabaseURL != "" {
		st, err := store.Open(ctx, cfg.DatabaseURL, cfg.Migrate)
		if err != nil {
			return err
		}
		defer st.Close()
		pg = newPGParts(log, reg, st, cfg)
		pg.followRevocations(ctx, log, reg, cfg.revocationInterval())
		cfg.Sandbox.OnDestroy = pg.tracker.Destroyed
		go sweepSessions(ctx, log, st)
		if cfg.RunSyncer {
			ev.sync(ctx, reg, st.Pool())
		}
		log.Info("PostgreSQL: API keys, quotas and sessions")
	}
	mgr, err := app.OpenManager(ctx, log, reg, cfg.PodmanURI, cfg.OCIRuntime, cfg.Sandbox)
	if err != nil {
		return err
	}
	defer mgr.Close()
	return Serve(ctx, log, newCombinedApp(log, reg, mgr, cfg, pg, ev), cfg.Addr, ModeCombined)
}

// NewCombined builds the combined-mode app without PostgreSQL: the whole
// REST API, the worker in-process, and a static API key when one is set.
func NewCombined(log *slog.Logger, reg *prometheus.Registry, mgr *sandbox.Manager, cfg Config) *fiber.App {
	return newCombinedApp(log, reg, mgr, cfg, nil, nil)
}

// pgParts are what PostgreSQL adds to a mode: stored API keys, quotas and
// session rows.
type pgParts struct {
	st      *store.Store
	tracker *sessions.Tracker
	authn   *keyauth.Authenticator
	dash    *dashboard.Dashboard // nil without WorkOS
}

// mountDashboard adds the web dashboard where it is configured, with the
// mode's sandbox lifecycle routes; it goes before the API-key middleware
// (its routes take the session cookie).
func (pg *pgParts) mountDashboard(app *fiber.App, lifecycle func(fiber.Router)) {
	if pg != nil && pg.dash != nil {
		pg.dash.Mount(app, pg.tracker.Handler(), lifecycle)
	}
}

// followRevocations makes the requests of a key that gets revoked end
// (combined mode: streams, watches and terminals close; new requests check
// the key in PostgreSQL anyway), from the list of revoked keys read every
// interval until ctx ends.
func (pg *pgParts) followRevocations(ctx context.Context, log *slog.Logger, reg prometheus.Registerer, interval time.Duration) {
	rev := auth.NewRevocations(nil)
	pg.authn.EndConnectionsWith(rev)
	ann := keyauth.NewAnnouncer(log, reg, pg.st, interval, func(l auth.RevocationList) error {
		rev.Apply(l)
		return nil
	})
	go ann.Run(ctx)
}

func newPGParts(log *slog.Logger, reg prometheus.Registerer, st *store.Store, cfg Config) *pgParts {
	failures := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "opensandbox_auth_failures_total", Help: "Refused credentials, by surface (http, grpc) and reason.",
	}, []string{"surface", "reason"})
	reg.MustRegister(failures)
	pg := &pgParts{
		st:      st,
		tracker: sessions.NewTracker(log, st, cfg.Sandbox.DefaultTimeout),
		authn:   keyauth.New(log, cfg.APIKey, st, func(reason string) { failures.WithLabelValues("http", reason).Inc() }),
	}
	if cfg.dashboard() {
		pg.dash = dashboard.New(log, st, dashboard.Config{
			WorkOS:       &dashboard.WorkOS{BaseURL: cfg.WorkOSAPIURL, ClientID: cfg.WorkOSClientID, APIKey: cfg.WorkOSAPIKey},
			PublicURL:    cfg.PublicURL,
			PersonalOrgs: cfg.PersonalOrgs,
		}, reg)
	}
	return pg
}

func newCombinedApp(log *slog.Logger, reg *prometheus.Registry, mgr *sandbox.Manager, cfg Config, pg *pgParts, ev *events) *fiber.App {
	app := httpx.NewApp(log, httpx.NewMetrics(reg))
	if cfg.APIKey == "" && pg == nil {
		// No credentials at all (local development, loopback only: see
		// Config.checkUnauthenticated): refuse what a browser page could send.
		app.Use(localOnly())
	}
	var sb httpapi.Sandboxes = mgr
	authn := auth.StaticKey(cfg.APIKey)
	authenticated := func(c *fiber.Ctx) bool {
		return cfg.APIKey == "" || auth.Carries(c, cfg.APIKey) || auth.Carries(c, cfg.MetricsToken)
	}
	if pg != nil {
		sb = sessions.Track(mgr, pg.tracker)
		authn = pg.authn.Middleware()
		authenticated = func(c *fiber.Ctx) bool { return auth.Carries(c, cfg.MetricsToken) || pg.authn.Valid(c) }
	}
	app.Get("/health", healthHandler(ModeCombined, ev, authenticated))
	h := httpapi.New(sb, cfg.MaxUpload)
	pg.mountDashboard(app, h.MountLifecycle)
	keyed := keyedWithMetrics(app, authn, reg, cfg.MetricsToken)
	if pg != nil {
		keyed.Get("/sessions", pg.tracker.Handler())
	}
	h.MountLifecycle(keyed)
	h.MountData(keyed)
	return app
}

// sweepSessions closes sessions whose end passed (a safety net beside the
// kill/timeout hooks and the event pipeline) and abandoned reservations.
func sweepSessions(ctx context.Context, log *slog.Logger, st *store.Store) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		expired, dropped, err := st.SweepSessions(sctx, 30*time.Second, 10*time.Minute)
		cancel()
		if err != nil {
			log.Warn("sweep sessions", "err", err)
		} else if expired+dropped > 0 {
			log.Info("swept sessions", "expired", expired, "abandoned_reservations", dropped)
		}
	}
}

// healthHandler answers GET /health without authentication: the role, and
// the event pipeline's backlog and lag where this process runs part of it;
// its last errors only when authenticated says the request carries valid
// credentials.
func healthHandler(role string, ev *events, authenticated func(*fiber.Ctx) bool) fiber.Handler {
	return func(c *fiber.Ctx) error {
		if ev == nil {
			return c.JSON(api.Health{Status: "ok", Role: role})
		}
		return c.JSON(fiber.Map{"status": "ok", "role": role, "events": ev.health(c, authenticated(c))})
	}
}

// keyedWithMetrics returns the router of the routes behind authn and serves
// GET /metrics: behind the metrics-only bearer token when one is configured
// (Prometheus then needs no API key, and API keys do not open it), else
// behind authn like the rest.
func keyedWithMetrics(app *fiber.App, authn fiber.Handler, reg *prometheus.Registry, token string) fiber.Router {
	if token != "" {
		// Before the group: its middleware would ask for an API key.
		app.Get("/metrics", auth.StaticKey(token), httpx.MetricsHandler(reg))
	}
	keyed := app.Group("", authn)
	if token == "" {
		keyed.Get("/metrics", httpx.MetricsHandler(reg))
	}
	return keyed
}

// Serve runs app on addr until ctx ends.
func Serve(ctx context.Context, log *slog.Logger, app *fiber.App, addr, role string) error {
	errc := make(chan error, 1)
	go func() { errc <- app.Listen(addr) }()
	log.Info("listening", "addr", addr, "role", role)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	return app.ShutdownWithTimeout(10 * time.Second)
}
