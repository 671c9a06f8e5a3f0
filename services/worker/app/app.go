package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/gofiber/fiber/v2"
	consulapi "github.com/hashicorp/consul/api"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/shared/auth"
	"github.com/opensandbox/opensandbox/services/shared/certfile"
	"github.com/opensandbox/opensandbox/services/shared/grpcx"
	"github.com/opensandbox/opensandbox/services/shared/httpx"
	"github.com/opensandbox/opensandbox/services/shared/natsx"
	"github.com/opensandbox/opensandbox/services/shared/obs"
	"github.com/opensandbox/opensandbox/services/shared/proto/workerv1"
	"github.com/opensandbox/opensandbox/services/worker/consulreg"
	"github.com/opensandbox/opensandbox/services/worker/grpcserver"
	"github.com/opensandbox/opensandbox/services/worker/heartbeat"
	"github.com/opensandbox/opensandbox/services/worker/httpapi"
	"github.com/opensandbox/opensandbox/services/worker/publisher"
	"github.com/opensandbox/opensandbox/services/worker/runtime"
	"github.com/opensandbox/opensandbox/services/worker/sandbox"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
)

// shutdownBudget bounds a graceful shutdown (the Nomad kill timeout matches).
const shutdownBudget = 15 * time.Second

// Manager is what a worker serves: the sandbox manager.
type Manager interface {
	httpapi.Sandboxes
	grpcserver.Sandboxes
	Count() int
}

var _ Manager = (*sandbox.Manager)(nil)

// Worker is a wired worker, ready to serve on two listeners.
type Worker struct {
	log  *slog.Logger
	cfg  Config
	http *fiber.App
	grpc *grpc.Server
	hb   *heartbeat.Heartbeat
	reg  *consulreg.Registrar // nil unless the registry is Consul
	gsrv *grpcserver.Server
	pub  *publisher.Publisher // nil when events are not published
	bus  Bus
	rev  *auth.Revocations
}

// New wires a worker around mgr; bus carries its heartbeats and the
// control plane's lists of revoked API keys.
func New(log *slog.Logger, reg *prometheus.Registry, mgr Manager, bus Bus, cfg Config) (*Worker, error) {
	tokens, err := auth.NewSandboxTokens(cfg.JWTSecret)
	if err != nil {
		return nil, err
	}
	authFailures := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "opensandbox_auth_failures_total", Help: "Refused credentials, by surface (http, grpc) and reason.",
	}, []string{"surface", "reason"})
	reg.MustRegister(authFailures)

	rev := auth.NewRevocations(func() {
		log.Warn("no revocation list from the control plane for too long: keyed sandbox tokens are refused and their connections closed until one comes")
	})
	revocationMetrics(reg, rev)

	w := &Worker{log: log, cfg: cfg, bus: bus, rev: rev}
	app := httpx.NewApp(log, httpx.NewMetrics(reg))
	app.Get("/health", w.health)
	metricsKey := cfg.MetricsToken
	if metricsKey == "" {
		metricsKey = cfg.ClusterSecret // deployments without a metrics token
	}
	app.Get("/metrics", auth.StaticKey(metricsKey), httpx.MetricsHandler(reg))
	data := app.Group("", auth.SandboxJWT(tokens, cfg.Sandbox.WorkerID, rev, func(reason string) {
		authFailures.WithLabelValues("http", reason).Inc()
		if reason == auth.ErrTokenRevoked.Code || reason == auth.ErrRevocationsStale.Code {
			// The request's own log line (same request id) names the path.
			log.Warn("sandbox token refused", "reason", reason)
		}
	}), scopeToTokenOrg)
	data.Get("/sandboxes/:id", func(c *fiber.Ctx) error {
		sb, err := mgr.Get(c.UserContext(), c.Params("id"))
		if err != nil {
			return err
		}
		return c.JSON(sb)
	})
	httpapi.New(mgr, cfg.MaxUpload).MountData(data)

	var extra []grpc.ServerOption
	if cfg.GRPCTLS.Enabled() {
		creds, err := grpcx.ServerCreds(cfg.GRPCTLS)
		if err != nil {
			return nil, err
		}
		extra = append(extra, creds)
	}
	gs := grpc.NewServer(grpcx.ServerOptions(
		grpcx.NewSecretAuth(cfg.ClusterSecret, func(string) { authFailures.WithLabelValues("grpc", "cluster_secret").Inc() }),
		grpcx.NewMetrics(reg, "server"), extra...,
	)...)
	hb, err := heartbeat.New(log, bus, heartbeat.Config{
		WorkerID: cfg.Sandbox.WorkerID, Region: cfg.Sandbox.Region,
		GRPCAddr: cfg.GRPCAddr, HTTPAddr: cfg.HTTPURL,
		Capacity: cfg.Sandbox.Capacity, Interval: cfg.HeartbeatInterval, Version: cfg.Version,
	}, mgr)
	if err != nil {
		return nil, err
	}
	w.hb = hb
	if cfg.Registry == RegistryConsul {
		if cfg.Consul == nil {
			return nil, errors.New("the Consul registry needs a Consul client")
		}
		w.reg, err = consulreg.New(log, cfg.Consul, consulreg.Config{
			WorkerID: cfg.Sandbox.WorkerID, Region: cfg.Sandbox.Region, HTTPURL: cfg.HTTPURL, GRPCAddr: cfg.GRPCAddr,
			Capacity: cfg.Sandbox.Capacity, Version: cfg.Version, TTL: cfg.ConsulTTL,
		}, nil)
		if err != nil {
			return nil, err
		}
	}
	w.gsrv = grpcserver.New(mgr, w.announceDraining)
	workerv1.RegisterSandboxWorkerServer(gs, w.gsrv)
	w.http, w.grpc = app, gs
	return w, nil
}

// announceDraining tells the control planes that the worker drains (or no
// longer does): at once in a heartbeat, and in its Consul registration.
func (w *Worker) announceDraining(ctx context.Context, on bool) {
	w.log.Info("draining", "on", on)
	w.hb.SetDraining(on)
	if err := w.hb.Beat(); err != nil {
		w.log.Warn("draining heartbeat not published", "err", err)
	}
	if w.reg != nil {
		if err := w.reg.SetDraining(ctx, on); err != nil {
			w.log.Warn("draining not registered in Consul", "err", err)
		}
	}
}

// health answers GET /health, with the event backlog when this worker
// publishes events; the publisher's last error only for a request carrying
// the metrics token or the cluster secret (it can name internal hosts).
func (w *Worker) health(c *fiber.Ctx) error {
	if w.pub == nil {
		return c.JSON(api.Health{Status: "ok", Role: "worker"})
	}
	st := w.pub.Status()
	if !auth.Carries(c, w.cfg.MetricsToken) && !auth.Carries(c, w.cfg.ClusterSecret) {
		st = st.Public()
	}
	return c.JSON(fiber.Map{"status": "ok", "role": "worker", "events": fiber.Map{"publisher": st}})
}

// SetPublisher makes GET /health report pub's backlog.
func (w *Worker) SetPublisher(pub *publisher.Publisher) { w.pub = pub }

// scopeToTokenOrg lets the data-path handlers check org ownership against the
// org the control plane put in the token.
func scopeToTokenOrg(c *fiber.Ctx) error {
	if claims, ok := c.Locals(auth.LocalSandboxClaims).(auth.SandboxClaims); ok {
		c.Locals(httpapi.LocalOrgID, claims.OrgID)
	}
	return c.Next()
}

// HTTP returns the data-path app (tests wrap it).
func (w *Worker) HTTP() *fiber.App { return w.http }

// Serve runs the HTTP and gRPC servers and the heartbeat until ctx ends or a
// server fails, then shuts down within the budget.
func (w *Worker) Serve(ctx context.Context, httpLn, grpcLn net.Listener) error {
	errc := make(chan error, 2)
	go func() { errc <- fmt.Errorf("http: %w", w.http.Listener(httpLn)) }()
	go func() { errc <- fmt.Errorf("grpc: %w", w.grpc.Serve(grpcLn)) }()
	// Beats outlive ctx: they stop when the shutdown is over.
	hbCtx, stopHB := context.WithCancel(context.WithoutCancel(ctx))
	hbDone := make(chan struct{})
	go func() { defer close(hbDone); w.hb.Run(hbCtx) }()
	revDone := make(chan struct{})
	go func() { defer close(revDone); followRevocations(hbCtx, w.log, w.bus, w.rev) }()
	if w.reg != nil {
		// Registered once serving; a failure here (the agent not up yet) is
		// mended by the check loop, which registers again when Consul does
		// not know the check.
		if err := w.reg.Register(ctx); err != nil {
			w.log.Warn("consul registration", "err", err)
		}
		regDone := make(chan struct{})
		go func() { defer close(regDone); w.reg.Run(hbCtx) }()
		defer func() {
			<-regDone
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := w.reg.Deregister(dctx); err != nil {
				w.log.Warn("consul deregistration", "err", err)
			}
		}()
	}
	w.log.Info("worker serving", "worker_id", w.cfg.Sandbox.WorkerID, "region", w.cfg.Sandbox.Region,
		"http", httpLn.Addr().String(), "grpc", grpcLn.Addr().String(), "connect_url", w.cfg.HTTPURL, "grpc_addr", w.cfg.GRPCAddr)

	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	// Keep beating through the graceful shutdown, flagged draining: the
	// control plane places nothing new here, and does not take a restart
	// that outlasts its stale timeout for a lost worker.
	w.log.Info("worker shutting down; draining")
	w.announceDraining(context.WithoutCancel(ctx), true)
	defer func() { stopHB(); <-hbDone; <-revDone }()
	stopped := make(chan struct{})
	go func() { w.grpc.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(shutdownBudget):
		w.grpc.Stop()
	}
	if herr := w.http.ShutdownWithTimeout(shutdownBudget); herr != nil && err == nil {
		err = herr
	}
	return err
}

// Main loads the configuration from the environment, runs a worker until ctx
// ends, then shuts down.
func Main(ctx context.Context) error {
	cfg, err := LoadConfig()
	if err != nil {
		return err
	}
	log := obs.NewLogger(os.Stderr, cfg.LogLevel).With("service", "worker", "worker_id", cfg.Sandbox.WorkerID)
	if err := obs.ServeDebug(log, os.Getenv("OPENSANDBOX_DEBUG_ADDR")); err != nil {
		return err
	}
	reg := obs.NewRegistry()

	if cfg.Registry == RegistryConsul {
		// The local agent: CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN and the
		// other standard CONSUL_* variables.
		if cfg.Consul, err = consulapi.NewClient(consulapi.DefaultConfig()); err != nil {
			return fmt.Errorf("consul: %w", err)
		}
	}
	nc, err := natsx.Connect(cfg.NATSURL, "worker-"+cfg.Sandbox.WorkerID, natsx.As(natsx.RoleWorker), natsx.Log(log))
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	defer nc.Close()

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var pubDone chan struct{}
	var pub *publisher.Publisher
	if cfg.PublishEvents {
		if pub, err = newPublisher(log, reg, nc, cfg); err != nil {
			return err
		}
		cfg.Sandbox.RetainEvents = true
		cfg.Sandbox.OnEvent = pub.Notify
		pubDone = make(chan struct{})
		go func() { defer close(pubDone); pub.Run(runCtx) }()
	}

	mgr, err := OpenManager(ctx, log, reg, cfg.PodmanURI, cfg.OCIRuntime, cfg.Sandbox)
	if err != nil {
		return err
	}
	defer mgr.Close()
	w, err := New(log, reg, mgr, nc, cfg)
	if err != nil {
		return err
	}
	w.pub = pub
	httpLn, err := ListenData(cfg)
	if err != nil {
		return err
	}
	grpcLn, err := net.Listen("tcp", cfg.GRPCListen)
	if err != nil {
		httpLn.Close()
		return err
	}
	err = w.Serve(ctx, httpLn, grpcLn)
	cancel()
	if pubDone != nil {
		<-pubDone
	}
	if ferr := nc.FlushTimeout(2 * time.Second); ferr != nil && !errors.Is(ferr, nats.ErrConnectionClosed) {
		log.Warn("nats flush at shutdown", "err", ferr)
	}
	return err
}

// ListenData opens the data path's listener: HTTPS when the configuration
// names a certificate (renewals are picked up per handshake), else HTTP.
func ListenData(cfg Config) (net.Listener, error) {
	var tlsCfg *tls.Config
	if cfg.DataTLSCert != "" {
		pair, err := certfile.Load(cfg.DataTLSCert, cfg.DataTLSKey)
		if err != nil {
			return nil, fmt.Errorf("data path tls: %w", err)
		}
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: pair.GetCertificate}
	}
	ln, err := net.Listen("tcp", cfg.HTTPListen)
	if err != nil || tlsCfg == nil {
		return ln, err
	}
	return tls.NewListener(ln, tlsCfg), nil
}

// OpenManager connects to the Podman service, starts a sandbox manager and
// restores the sandboxes of a previous run. Close the manager when done.
func OpenManager(ctx context.Context, log *slog.Logger, reg prometheus.Registerer, podmanURI, ociRuntime string, cfg sandbox.Config) (*sandbox.Manager, error) {
	rt, err := runtime.NewPodman(ctx, podmanURI, ociRuntime)
	if err != nil {
		return nil, err
	}
	rt.Instrument(log, runtime.NewFirewallMetrics(reg))
	mgr, err := sandbox.New(log, rt, cfg, sandbox.NewMetrics(reg))
	if err != nil {
		return nil, err
	}
	if err := mgr.Restore(ctx); err != nil {
		mgr.Close()
		return nil, fmt.Errorf("restore sandboxes: %w", err)
	}
	return mgr, nil
}

// newPublisher returns the publisher of this worker's events; it sets up the
// stream itself, waiting for NATS if need be.
func newPublisher(log *slog.Logger, reg prometheus.Registerer, nc *nats.Conn, cfg Config) (*publisher.Publisher, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	return publisher.New(log, js, publisher.Config{
		DataDir: cfg.Sandbox.DataDir,
		Subject: natsx.EventSubject(cfg.Sandbox.Region, cfg.Sandbox.WorkerID),
		// A worker always has a syncer behind it (server mode).
		Stream:           natsx.ConsumedStream(cfg.EventsMaxBytes),
		EventsPerMessage: cfg.EventsPerMessage,
		FlushOnStop:      5 * time.Second, // within the kill timeout's margin
	}, publisher.NewMetrics(reg))
}
