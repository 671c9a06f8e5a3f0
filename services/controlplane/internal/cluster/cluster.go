// Package cluster is the control plane's REST API in server mode: it places
// sandboxes on workers over gRPC, finds where a sandbox lives, and hands out
// sandbox tokens with the worker's connectURL. It serves no data-path route:
// SDKs take commands, files and terminals straight to the worker.
package cluster

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/keyauth"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/placement"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/registry"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/sessions"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/store"
	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/shared/auth"
	"github.com/opensandbox/opensandbox/services/shared/errs"
	"github.com/opensandbox/opensandbox/services/shared/grpcx"
	"github.com/opensandbox/opensandbox/services/shared/httpx"
	"github.com/opensandbox/opensandbox/services/shared/proto/workerv1"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
)

// RegionHeader names the region when the body does not.
const RegionHeader = "X-OpenSandbox-Region"

// Timeouts of the calls to workers.
const (
	createTimeout = 60 * time.Second
	callTimeout   = 15 * time.Second
	dbTimeout     = 5 * time.Second
)

// Sessions reads session rows (the store).
type Sessions interface {
	Session(ctx context.Context, sandboxID string) (store.Session, error)
	ListSessions(ctx context.Context, orgID, status string, limit int) ([]store.Session, error)
}

// Workers hands out gRPC clients by worker address (workerclient.Pool).
type Workers interface {
	Client(addr string) (workerv1.SandboxWorkerClient, error)
}

// Registry is the live view of the workers (registry.Registry).
type Registry interface {
	Region(region string) []registry.Worker
	Get(id string) (registry.Worker, bool)
	List() []registry.Worker
	Placed(id string)
	MarkFull(id string)
}

var _ Registry = (*registry.Registry)(nil)

// Metrics are the placement metrics.
type Metrics struct {
	Decisions *prometheus.CounterVec
	Fallbacks *prometheus.CounterVec
	Duration  prometheus.Histogram
}

// NewMetrics registers the placement metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "opensandbox_placement_decisions_total",
			Help: "Placement attempts by result (placed, worker_full, worker_draining, unreachable, rejected, no_worker).",
		}, []string{"region", "result"}),
		Fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "opensandbox_placement_fallbacks_total",
			Help: "Sandboxes placed outside the region asked for, which had no capacity (OPENSANDBOX_REGION_FALLBACK).",
		}, []string{"from", "to"}),
		Duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "opensandbox_placement_duration_seconds", Help: "Time to place and create a sandbox on a worker, retries included.",
			Buckets: []float64{.01, .025, .05, .1, .15, .2, .3, .5, 1, 2, 5, 10, 30},
		}),
	}
	reg.MustRegister(m.Decisions, m.Fallbacks, m.Duration)
	return m
}

// Config configures the API.
type Config struct {
	DefaultRegion string
	// RegionFallback is the order in which other regions are tried when the
	// one asked for has no capacity (unless the request is strictRegion).
	RegionFallback []string
}

// regionOrder is where a create for region may go: that region, then the
// fallback order without it; only that region when strict.
func (c Config) regionOrder(region string, strict bool) []string {
	out := []string{region}
	if strict {
		return out
	}
	for _, r := range c.RegionFallback {
		if r != region {
			out = append(out, r)
		}
	}
	return out
}

// API is the server-mode REST API.
type API struct {
	log      *slog.Logger
	cfg      Config
	tracker  *sessions.Tracker
	sessions Sessions
	reg      Registry
	workers  Workers
	tokens   *auth.SandboxTokens
	picker   *placement.Picker
	metrics  *Metrics
}

// New returns the API.
func New(log *slog.Logger, cfg Config, tracker *sessions.Tracker, ss Sessions, reg Registry, workers Workers,
	tokens *auth.SandboxTokens, picker *placement.Picker, m *Metrics) *API {
	return &API{log: log, cfg: cfg, tracker: tracker, sessions: ss, reg: reg, workers: workers, tokens: tokens, picker: picker, metrics: m}
}

// Mount adds the routes to r (which authenticates callers).
func (a *API) Mount(r fiber.Router) {
	a.MountLifecycle(r)
	r.Post("/sandboxes/:id/token", a.refreshToken)
	r.Get("/workers", keyauth.RequireScope(keyauth.ScopeAdmin), a.listWorkers)
	r.All("/sandboxes/:id/*", func(*fiber.Ctx) error {
		return errs.NotFound("wrong_endpoint", "data-path routes are served by the sandbox's worker: use the connectURL and token of the create answer (POST /sandboxes/:id/token refreshes them)")
	})
}

// MountLifecycle adds create, list, get, kill and timeout: what the web
// dashboard serves too, for the signed-in user's org.
func (a *API) MountLifecycle(r fiber.Router) {
	r.Post("/sandboxes", a.create)
	r.Get("/sandboxes", a.list)
	r.Get("/sandboxes/:id", a.get)
	r.Delete("/sandboxes/:id", a.kill)
	r.Post("/sandboxes/:id/timeout", a.setTimeout)
}

// TokenResponse is the answer of POST /sandboxes/:id/token.
type TokenResponse struct {
	Token          string    `json:"token"`
	TokenExpiresAt time.Time `json:"tokenExpiresAt"`
	ConnectURL     string    `json:"connectURL"`
}

func (a *API) create(c *fiber.Ctx) error {
	var cfg api.SandboxConfig
	if err := httpx.ReadJSON(c, &cfg); err != nil {
		return err
	}
	caller := keyauth.CallerOf(c)
	region := cfg.Region
	if region == "" {
		region = c.Get(RegionHeader)
	}
	if region == "" {
		region = a.cfg.DefaultRegion
	}
	ctx := c.UserContext()
	res, err := a.tracker.Begin(ctx, caller.Org, &cfg)
	if err != nil {
		return err
	}
	sb, w, err := a.placeInRegions(ctx, region, cfg, caller.OrgID())
	if err != nil {
		a.tracker.Abort(ctx, res)
		return err
	}
	if err := a.tracker.Created(ctx, res, sb, cfg); err != nil {
		a.destroy(context.WithoutCancel(ctx), w, sb.SandboxID)
		a.tracker.Abort(ctx, res)
		return err
	}
	if err := a.withToken(&sb, caller, caller.OrgID(), w); err != nil {
		return err
	}
	return c.Status(fiber.StatusCreated).JSON(sb)
}

// placeInRegions places in region, or else in the next region of the
// fallback order that has capacity; the answer's region is the one used.
func (a *API) placeInRegions(ctx context.Context, region string, cfg api.SandboxConfig, orgID string) (api.Sandbox, registry.Worker, error) {
	order := a.cfg.regionOrder(region, cfg.StrictRegion)
	for _, r := range order {
		sb, w, err := a.place(ctx, r, cfg, orgID)
		if errs.As(err).Code == "no_worker_available" {
			continue
		}
		if err == nil {
			sb.Region = r
			if r != region {
				a.metrics.Fallbacks.WithLabelValues(region, r).Inc()
				a.log.Info("placed in a fallback region", "requested_region", region, "region", r, "sandbox_id", sb.SandboxID, "worker_id", w.ID)
			}
		}
		return sb, w, err
	}
	if cfg.StrictRegion {
		return api.Sandbox{}, registry.Worker{}, errs.Unavailable("no_capacity", "no healthy capacity in region %q (strictRegion)", region)
	}
	return api.Sandbox{}, registry.Worker{}, errs.Unavailable("no_worker_available", "no worker with free capacity in regions %s", strings.Join(order, ", "))
}

// place creates the sandbox on a worker of region: best of K by load; a
// worker that answers full or cannot be reached is skipped for the next.
func (a *API) place(ctx context.Context, region string, cfg api.SandboxConfig, orgID string) (api.Sandbox, registry.Worker, error) {
	start := time.Now()
	defer func() { a.metrics.Duration.Observe(time.Since(start).Seconds()) }()
	skip := map[string]bool{}
	for {
		w, ok := a.picker.Pick(a.reg.Region(region), skip)
		if !ok {
			a.metrics.Decisions.WithLabelValues(region, "no_worker").Inc()
			return api.Sandbox{}, w, errs.Unavailable("no_worker_available", "no worker with free capacity in region %q", region)
		}
		pb, err := a.createOn(ctx, w, cfg, orgID)
		if err == nil {
			a.reg.Placed(w.ID)
			a.metrics.Decisions.WithLabelValues(region, "placed").Inc()
			return workerv1.SandboxFromProto(pb), w, nil
		}
		e := errs.As(err)
		switch e.Code {
		case "worker_full", "worker_draining":
			a.reg.MarkFull(w.ID)
			a.metrics.Decisions.WithLabelValues(region, e.Code).Inc()
		case "worker_unreachable":
			a.metrics.Decisions.WithLabelValues(region, "unreachable").Inc()
			a.log.Warn("worker unreachable at create; trying another", "worker_id", w.ID, "err", err)
		default:
			a.metrics.Decisions.WithLabelValues(region, "rejected").Inc()
			return api.Sandbox{}, w, err
		}
		skip[w.ID] = true
	}
}

// createOn asks one worker to create the sandbox. Only a failure before the
// request left (no connection to the worker) is worker_unreachable, which
// place retries elsewhere; once the request reached the worker, a broken
// connection may have left a sandbox there, and a retry would make a second
// one: that is worker_failed, which is not retried.
func (a *API) createOn(ctx context.Context, w registry.Worker, cfg api.SandboxConfig, orgID string) (*workerv1.Sandbox, error) {
	cl, err := a.workers.Client(w.GRPCAddr)
	if err != nil {
		return nil, errs.Unavailable("worker_unreachable", "worker unreachable").WithCause(err)
	}
	ctx, cancel := context.WithTimeout(ctx, createTimeout)
	defer cancel()
	// The peer is recorded only when the call got a transport stream, that
	// is when the request was sent on a connection to the worker.
	var reached peer.Peer
	pb, err := cl.CreateSandbox(ctx, &workerv1.CreateSandboxRequest{Config: workerv1.ConfigToProto(cfg), OrgId: orgID}, grpc.Peer(&reached))
	err = grpcx.FromStatus(err)
	if errs.As(err).Code == "worker_unreachable" && reached.Addr != nil {
		return nil, errs.Unavailable("worker_failed", "the worker failed while creating the sandbox; it may have been created there").WithCause(err)
	}
	return pb, err
}

// withToken adds the worker's connectURL and a sandbox token for caller to
// sb. The token carries the caller's data-path scope and key id (revoking
// the key revokes it) and expires with the sandbox or the key, whichever
// ends first. A dashboard session gets none: its tokens could not be
// revoked with it, and the dashboard has no use for the data path.
func (a *API) withToken(sb *api.Sandbox, caller keyauth.Caller, orgID string, w registry.Worker) error {
	if !caller.Static && caller.KeyID == "" {
		return nil
	}
	exp := sb.EndAt
	if caller.KeyExpires != nil && caller.KeyExpires.Before(exp) {
		exp = *caller.KeyExpires
	}
	tok, exp, err := a.tokens.Issue(auth.Grant{OrgID: orgID, SandboxID: sb.SandboxID, WorkerID: w.ID,
		Scope: caller.DataScope(), KeyID: caller.KeyID, Expires: exp})
	if err != nil {
		return errs.Internal("issue sandbox token", err)
	}
	sb.Token, sb.TokenExpiresAt, sb.ConnectURL = tok, &exp, w.HTTPAddr
	return nil
}

func (a *API) list(c *fiber.Ctx) error {
	ctx, cancel := context.WithTimeout(c.UserContext(), dbTimeout)
	defer cancel()
	rows, err := a.sessions.ListSessions(ctx, keyauth.CallerOf(c).OrgID(), api.StatusRunning, 1000)
	if err != nil {
		return errs.Unavailable("database_unavailable", "cannot list sandboxes now").WithCause(err)
	}
	out := make([]api.Sandbox, 0, len(rows))
	now := time.Now()
	for _, s := range rows {
		if s.EndAt != nil && s.EndAt.Before(now) {
			continue // ended on its worker; the sweep closes the session soon
		}
		out = append(out, sandboxOf(s))
	}
	return c.JSON(out)
}

func sandboxOf(s store.Session) api.Sandbox {
	sb := api.Sandbox{
		SandboxID: s.SandboxID, TemplateID: s.Template, Alias: s.Config.Alias, Status: s.Status,
		StartedAt: s.StartedAt, Metadata: s.Metadata, CPUCount: s.Config.CPUCount, MemoryMB: s.Config.MemoryMB,
		NetworkEnabled: s.Config.NetworkEnabled, WorkerID: s.WorkerID, Region: s.Region,
	}
	if s.EndAt != nil {
		sb.EndAt = *s.EndAt
	}
	return sb
}

// located is a running sandbox of the caller and the worker that holds it.
type located struct {
	session store.Session
	worker  registry.Worker
	client  workerv1.SandboxWorkerClient
}

// locate finds the caller's running sandbox :id and its worker.
func (a *API) locate(c *fiber.Ctx) (located, error) {
	id := c.Params("id")
	ctx, cancel := context.WithTimeout(c.UserContext(), dbTimeout)
	defer cancel()
	s, err := a.sessions.Session(ctx, id)
	caller := keyauth.CallerOf(c)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return located{}, errs.ErrSandboxNotFound
	case err != nil:
		return located{}, errs.Unavailable("database_unavailable", "cannot look the sandbox up now").WithCause(err)
	case !caller.Static && s.OrgID != caller.OrgID():
		return located{}, errs.ErrSandboxNotFound // other orgs' sandboxes do not exist
	case s.Status != api.StatusRunning || strings.HasPrefix(s.SandboxID, "pending:"):
		return located{}, errs.ErrSandboxNotFound
	}
	w, ok := a.reg.Get(s.WorkerID)
	if !ok {
		return located{}, errs.Unavailable("worker_unavailable", "the worker holding this sandbox is not available")
	}
	cl, err := a.workers.Client(w.GRPCAddr)
	if err != nil {
		return located{}, errs.Unavailable("worker_unreachable", "worker unreachable").WithCause(err)
	}
	return located{session: s, worker: w, client: cl}, nil
}

// gone handles a worker's "not found" for a session we had as running: the
// sandbox ended there (its timeout), so the session is closed.
func (a *API) gone(ctx context.Context, id string, err error) error {
	if errors.Is(err, errs.ErrSandboxNotFound) {
		a.tracker.End(ctx, id, api.StatusStopped, "")
	}
	return err
}

func (a *API) fetch(c *fiber.Ctx) (api.Sandbox, located, error) {
	l, err := a.locate(c)
	if err != nil {
		return api.Sandbox{}, l, err
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), callTimeout)
	defer cancel()
	pb, err := l.client.GetSandbox(ctx, &workerv1.GetSandboxRequest{SandboxId: l.session.SandboxID})
	if err != nil {
		return api.Sandbox{}, l, a.gone(c.UserContext(), l.session.SandboxID, grpcx.FromStatus(err))
	}
	return workerv1.SandboxFromProto(pb), l, nil
}

func (a *API) get(c *fiber.Ctx) error {
	sb, l, err := a.fetch(c)
	if err != nil {
		return err
	}
	if err := a.withToken(&sb, keyauth.CallerOf(c), l.session.OrgID, l.worker); err != nil {
		return err
	}
	return c.JSON(sb)
}

func (a *API) refreshToken(c *fiber.Ctx) error {
	sb, l, err := a.fetch(c)
	if err != nil {
		return err
	}
	if err := a.withToken(&sb, keyauth.CallerOf(c), l.session.OrgID, l.worker); err != nil {
		return err
	}
	if sb.Token == "" {
		return errs.NotFound("no_token", "sandbox tokens are issued to API keys")
	}
	return c.JSON(TokenResponse{Token: sb.Token, TokenExpiresAt: *sb.TokenExpiresAt, ConnectURL: sb.ConnectURL})
}

func (a *API) kill(c *fiber.Ctx) error {
	l, err := a.locate(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), callTimeout)
	defer cancel()
	_, err = l.client.DestroySandbox(ctx, &workerv1.DestroySandboxRequest{SandboxId: l.session.SandboxID})
	if err != nil {
		return a.gone(c.UserContext(), l.session.SandboxID, grpcx.FromStatus(err))
	}
	a.tracker.End(c.UserContext(), l.session.SandboxID, api.StatusStopped, "")
	return c.SendStatus(fiber.StatusNoContent)
}

func (a *API) destroy(ctx context.Context, w registry.Worker, id string) {
	cl, err := a.workers.Client(w.GRPCAddr)
	if err == nil {
		ctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		_, err = cl.DestroySandbox(ctx, &workerv1.DestroySandboxRequest{SandboxId: id})
	}
	if err != nil {
		a.log.Error("destroy sandbox after a failed create", "sandbox_id", id, "worker_id", w.ID, "err", err)
	}
}

func (a *API) setTimeout(c *fiber.Ctx) error {
	var req api.TimeoutRequest
	if err := httpx.ReadJSON(c, &req); err != nil {
		return err
	}
	if req.Timeout <= 0 {
		return errs.Invalid("timeout must be a positive number of seconds")
	}
	if err := sessions.CheckTimeout(keyauth.CallerOf(c).Org, req.Timeout); err != nil {
		return err
	}
	l, err := a.locate(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), callTimeout)
	defer cancel()
	pb, err := l.client.SetTimeout(ctx, &workerv1.SetTimeoutRequest{SandboxId: l.session.SandboxID, TimeoutSeconds: int64(req.Timeout)})
	if err != nil {
		return a.gone(c.UserContext(), l.session.SandboxID, grpcx.FromStatus(err))
	}
	a.tracker.TimeoutSet(c.UserContext(), l.session.SandboxID, pb.GetEndAt().AsTime())
	return c.SendStatus(fiber.StatusNoContent)
}

func (a *API) listWorkers(c *fiber.Ctx) error {
	return c.JSON(a.reg.List())
}
