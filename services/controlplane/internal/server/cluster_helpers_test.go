package server

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/keyauth"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/store"
	"github.com/opensandbox/opensandbox/services/shared/natsx"
	"github.com/opensandbox/opensandbox/services/shared/obs"
	"github.com/opensandbox/opensandbox/services/shared/pgtest"
	"github.com/opensandbox/opensandbox/services/worker/app"
	"github.com/opensandbox/opensandbox/services/worker/sandbox"
	"github.com/opensandbox/opensandbox/services/worker/sandboxtest"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const (
	testJWTSecret    = "test-jwt-secret-0123456789"
	testWorkerSecret = "test-worker-secret-0123456789"
)

// cluster is a server-mode control plane on a real listener with real
// PostgreSQL and an embedded NATS server; workers join it over NATS.
type testCluster struct {
	cp    *stack
	reg   *prometheus.Registry
	st    *store.Store
	nats  string // client URL for workers (with the worker role's credentials)
	nc    *nats.Conn
	org   store.Org
	token string // the org's API key
	admin *stack // the same org with a key that also has the admin scope (GET /workers)
}

func startCluster(t *testing.T, mutate func(*Config)) *testCluster {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := store.Open(ctx, pgtest.NewDatabase(t), true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	// NATS as in production: a user per role with its permissions, so
	// every test here also proves each component needs no more than those.
	srv, err := natsx.StartEmbedded(natsx.EmbeddedOptions{Port: -1, StoreDir: t.TempDir(), Users: []natsx.User{
		{Name: natsx.RoleControlPlane, Password: "cp-password", Role: natsx.RoleControlPlane},
		{Name: natsx.RoleWorker, Password: "worker-password", Role: natsx.RoleWorker},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := natsx.Connect(natsx.URLFor(srv.ClientURL(), natsx.RoleControlPlane, "cp-password"), "test-cp", natsx.As(natsx.RoleControlPlane))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)

	cfg := Config{Mode: ModeServer, JWTSecret: testJWTSecret, WorkerSecret: testWorkerSecret, DefaultRegion: "eu",
		StaleAfter: 15 * time.Second, MaxUpload: 1 << 30, Sandbox: sandbox.DefaultConfig()}
	if mutate != nil {
		mutate(&cfg)
	}
	if cfg.Autoscaler.LocalEnv != nil { // the local pool's workers join this NATS
		cfg.Autoscaler.LocalEnv = append(cfg.Autoscaler.LocalEnv, "NATS_URL="+natsx.URLFor(srv.ClientURL(), natsx.RoleWorker, "worker-password"))
	}
	reg := obs.NewRegistry()
	a, err := StartServer(ctx, sandboxtest.Logger(t), reg, st, nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t)
	go a.Listener(ln)
	t.Cleanup(func() { a.Shutdown() })

	org, key := newOrg(t, st, "acme", 10, 3600)
	adminKey := newKey(t, st, org, func(k *store.APIKey) { k.Scopes = []string{keyauth.ScopeWrite, keyauth.ScopeAdmin} })
	url := "http://" + ln.Addr().String()
	return &testCluster{cp: &stack{url: url, key: key}, reg: reg, st: st, nats: natsx.URLFor(srv.ClientURL(), natsx.RoleWorker, "worker-password"), nc: nc, org: org, token: key,
		admin: &stack{url: url, key: adminKey}}
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// newOrg creates an org with a fresh osb_ key.
func newOrg(t *testing.T, st *store.Store, slug string, maxSandboxes, maxTimeout int) (store.Org, string) {
	t.Helper()
	ctx := context.Background()
	org, err := st.CreateOrg(ctx, store.Org{Name: slug, Slug: slug, MaxConcurrentSandboxes: maxSandboxes, MaxSandboxTimeoutSec: maxTimeout})
	if err != nil {
		t.Fatal(err)
	}
	return org, newKey(t, st, org, nil)
}

func newKey(t *testing.T, st *store.Store, org store.Org, mutate func(*store.APIKey)) string {
	t.Helper()
	key := store.NewKey()
	k := store.APIKey{OrgID: org.ID, Name: "test", Prefix: store.VisiblePrefix(key)}
	if mutate != nil {
		mutate(&k)
	}
	if _, err := st.CreateAPIKey(context.Background(), k, store.HashKey(key)); err != nil {
		t.Fatal(err)
	}
	return key
}

// worker is an in-process worker: its own manager, HTTP and gRPC servers and
// heartbeats over the cluster's NATS.
type testWorker struct {
	id     string
	region string
	url    string
	grpc   string
	mgr    *sandbox.Manager
	stop   func()
}

type workerOpts struct {
	region    string
	capacity  int
	heartbeat time.Duration
	before    func(*sandbox.Manager) // runs before the worker serves (and beats)
	mgr       *sandbox.Manager       // serve this manager (a worker restarting) instead of a new one
}

func (c *testCluster) startWorker(t *testing.T, o workerOpts) *testWorker {
	t.Helper()
	mgr := o.mgr
	if mgr == nil {
		rt := sandboxtest.Runtime(t)
		scfg := sandboxtest.Config(t)
		scfg.Region = o.region
		if o.capacity > 0 {
			scfg.Capacity = o.capacity
		}
		mgr = sandboxtest.Manager(t, rt, scfg)
	}
	scfg := mgr.Config()
	if o.before != nil {
		o.before(mgr)
	}
	nc, err := natsx.Connect(c.nats, "test-worker", natsx.As(natsx.RoleWorker))
	if err != nil {
		t.Fatal(err)
	}
	httpLn, grpcLn := listen(t), listen(t)
	if o.heartbeat == 0 {
		o.heartbeat = 200 * time.Millisecond
	}
	cfg := app.Config{
		HTTPURL: "http://" + httpLn.Addr().String(), GRPCAddr: grpcLn.Addr().String(),
		JWTSecret: testJWTSecret, ClusterSecret: testWorkerSecret, HeartbeatInterval: o.heartbeat,
		MaxUpload: 1 << 30, Sandbox: scfg,
	}
	w, err := app.New(sandboxtest.Logger(t), obs.NewRegistry(), mgr, nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Serve(ctx, httpLn, grpcLn) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		<-done
		nc.Close()
	}
	t.Cleanup(stop) // before the manager's cleanup (registered earlier, runs later)
	wk := &testWorker{id: scfg.WorkerID, region: o.region, url: cfg.HTTPURL, grpc: cfg.GRPCAddr, mgr: mgr, stop: stop}
	c.waitWorker(t, wk.id, true)
	return wk
}

// waitWorker polls GET /workers until the worker is listed (or gone).
func (c *testCluster) waitWorker(t *testing.T, id string, present bool) time.Duration {
	t.Helper()
	start := time.Now()
	pollUntil(t, 30*time.Second, "worker "+id+" listed="+map[bool]string{true: "yes", false: "no"}[present], func() bool {
		var ws []map[string]any
		c.admin.json(t, "GET", "/workers", nil, 200, &ws)
		for _, w := range ws {
			if w["worker_id"] == id {
				return present
			}
		}
		return !present
	})
	return time.Since(start)
}

// pollUntil polls cond until it holds or the deadline passes.
func pollUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	delay := 20 * time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(delay)
		if delay < 250*time.Millisecond {
			delay *= 2
		}
	}
}

// requestsByRoute sums opensandbox_http_requests_total by route.
func requestsByRoute(t *testing.T, reg prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "opensandbox_http_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			out[label(m, "route")] += m.GetCounter().GetValue()
		}
	}
	return out
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// counter sums the series of a counter that carry the given labels.
func counter(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				if label(m, k) != v {
					continue next
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

func decode(t *testing.T, body []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
}

func isDataPath(route string) bool {
	for _, p := range []string{"/commands", "/files", "/pty", "/processes"} {
		if strings.Contains(route, p) {
			return true
		}
	}
	return false
}
