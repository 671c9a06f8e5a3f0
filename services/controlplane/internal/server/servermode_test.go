package server

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opensandbox/opensandbox/services/controlplane/internal/cluster"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/sessions"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/store"
	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/shared/auth"
	"github.com/opensandbox/opensandbox/services/shared/grpcx"
	"github.com/opensandbox/opensandbox/services/shared/proto/workerv1"
	"github.com/opensandbox/opensandbox/services/worker/sandbox"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// direct is a client of one worker's data path with a sandbox token.
func direct(sb api.Sandbox) *stack { return &stack{url: sb.ConnectURL} }

func bearer(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

// Two workers in two regions: creates land in the region asked for (body,
// then header, then the default); the SDK reaches the sandbox directly with
// connectURL + token and the control plane never sees a data-path request.
func TestServerModeTwoRegions(t *testing.T) {
	c := startCluster(t, nil)
	eu := c.startWorker(t, workerOpts{region: "eu"})
	us := c.startWorker(t, workerOpts{region: "us"})

	var inUS, inEU, byDefault api.Sandbox
	c.cp.json(t, "POST", "/sandboxes", api.SandboxConfig{TemplateID: "busybox", Region: "us"}, 201, &inUS)
	resp, body := c.cp.do(t, "POST", "/sandboxes", strings.NewReader(`{"template":"busybox"}`), "Content-Type", "application/json", cluster.RegionHeader, "eu")
	if resp.StatusCode != 201 {
		t.Fatalf("create with region header: %d %s", resp.StatusCode, body)
	}
	decode(t, body, &inEU)
	c.cp.json(t, "POST", "/sandboxes", api.SandboxConfig{TemplateID: "busybox"}, 201, &byDefault)
	for _, tc := range []struct {
		sb api.Sandbox
		w  *testWorker
	}{{inUS, us}, {inEU, eu}, {byDefault, eu}} {
		if tc.sb.WorkerID != tc.w.id || tc.sb.Region != tc.w.region || tc.sb.ConnectURL != tc.w.url || tc.sb.Token == "" || tc.sb.TokenExpiresAt == nil {
			t.Fatalf("sandbox %+v, want it on %s (%s)", tc.sb, tc.w.id, tc.w.region)
		}
		if _, err := tc.w.mgr.Get(context.Background(), tc.sb.SandboxID); err != nil {
			t.Fatalf("sandbox %s is not on worker %s: %v", tc.sb.SandboxID, tc.w.id, err)
		}
		if d := tc.sb.EndAt.Sub(*tc.sb.TokenExpiresAt); d < 0 || d >= time.Second {
			t.Fatalf("token expires %s, sandbox ends %s", tc.sb.TokenExpiresAt, tc.sb.EndAt)
		}
	}
	if org, _ := us.mgr.OrgOf(inUS.SandboxID); org != c.org.ID {
		t.Fatalf("sandbox org %q, want %q", org, c.org.ID)
	}
	before := requestsByRoute(t, c.reg)

	// The data path, straight to the worker.
	w := direct(inUS)
	var res api.ProcessResult
	resp, body = w.do(t, "POST", "/sandboxes/"+inUS.SandboxID+"/commands", strings.NewReader(`{"cmd":"echo hello; echo oops >&2"}`), bearer(inUS.Token)...)
	if resp.StatusCode != 200 {
		t.Fatalf("exec on worker: %d %s", resp.StatusCode, body)
	}
	decode(t, body, &res)
	if res.Stdout != "hello\n" || res.Stderr != "oops\n" {
		t.Fatalf("exec: %+v", res)
	}
	resp, _ = w.do(t, "PUT", "/sandboxes/"+inUS.SandboxID+"/files?path=/tmp/x", strings.NewReader("data"), bearer(inUS.Token)...)
	if resp.StatusCode != 200 {
		t.Fatalf("write: %d", resp.StatusCode)
	}
	resp, body = w.do(t, "GET", "/sandboxes/"+inUS.SandboxID+"/files?path=/tmp/x&token="+inUS.Token, nil)
	if resp.StatusCode != 200 || string(body) != "data" {
		t.Fatalf("read with ?token=: %d %q", resp.StatusCode, body)
	}
	resp, body = w.do(t, "GET", "/sandboxes/"+inUS.SandboxID, nil, bearer(inUS.Token)...)
	if resp.StatusCode != 200 || !strings.Contains(string(body), inUS.SandboxID) {
		t.Fatalf("get on worker: %d %s", resp.StatusCode, body)
	}

	// Tokens are scoped: A's token does not open B, on B's worker or A's.
	resp, body = direct(inEU).do(t, "POST", "/sandboxes/"+inEU.SandboxID+"/commands", strings.NewReader(`{"cmd":"true"}`), bearer(inUS.Token)...)
	wantError(t, resp, body, 403, "forbidden")
	resp, body = direct(inEU).do(t, "POST", "/sandboxes/"+inUS.SandboxID+"/commands", strings.NewReader(`{"cmd":"true"}`), bearer(inUS.Token)...)
	wantError(t, resp, body, 403, "forbidden")
	resp, body = direct(byDefault).do(t, "POST", "/sandboxes/"+byDefault.SandboxID+"/commands", strings.NewReader(`{"cmd":"true"}`), bearer(inEU.Token)...)
	wantError(t, resp, body, 403, "forbidden")
	resp, body = w.do(t, "POST", "/sandboxes/"+inUS.SandboxID+"/commands", strings.NewReader(`{"cmd":"true"}`))
	wantError(t, resp, body, 401, "unauthenticated")
	// After expiry: 401 token_expired (signed by the cluster's secret).
	tokens, _ := auth.NewSandboxTokens(testJWTSecret)
	old, _, _ := tokens.Issue(auth.Grant{OrgID: c.org.ID, SandboxID: inUS.SandboxID, WorkerID: us.id, Scope: auth.ScopeFull, Expires: time.Now().Add(-time.Second)})
	resp, body = w.do(t, "POST", "/sandboxes/"+inUS.SandboxID+"/commands", strings.NewReader(`{"cmd":"true"}`), bearer(old)...)
	wantError(t, resp, body, 401, "token_expired")
	forged, _ := auth.NewSandboxTokens("some-other-secret-123456")
	bad, _, _ := forged.Issue(auth.Grant{OrgID: c.org.ID, SandboxID: inUS.SandboxID, WorkerID: us.id, Scope: auth.ScopeFull, Expires: time.Now().Add(time.Minute)})
	resp, body = w.do(t, "POST", "/sandboxes/"+inUS.SandboxID+"/commands", strings.NewReader(`{"cmd":"true"}`), bearer(bad)...)
	wantError(t, resp, body, 403, "forbidden")

	// The control plane saw none of that, and serves no data-path route.
	after := requestsByRoute(t, c.reg)
	for route, n := range after {
		if isDataPath(route) || n != before[route] {
			t.Errorf("control plane saw route %s (%v -> %v requests) during data-path traffic", route, before[route], n)
		}
	}
	resp, body = c.cp.do(t, "POST", "/sandboxes/"+inUS.SandboxID+"/commands", strings.NewReader(`{"cmd":"true"}`))
	wantError(t, resp, body, 404, "wrong_endpoint")

	// Discovery: GET through the control plane finds the worker and hands out
	// a fresh token; the refresh route does the same.
	var got api.Sandbox
	c.cp.json(t, "GET", "/sandboxes/"+inUS.SandboxID, nil, 200, &got)
	if got.WorkerID != us.id || got.ConnectURL != us.url || got.Token == "" {
		t.Fatalf("discovered %+v", got)
	}
	var tok cluster.TokenResponse
	c.cp.json(t, "POST", "/sandboxes/"+inUS.SandboxID+"/token", nil, 200, &tok)
	if tok.ConnectURL != us.url || tok.Token == "" || tok.TokenExpiresAt.IsZero() {
		t.Fatalf("refresh %+v", tok)
	}
	resp, _ = w.do(t, "POST", "/sandboxes/"+inUS.SandboxID+"/commands", strings.NewReader(`{"cmd":"true"}`), bearer(tok.Token)...)
	if resp.StatusCode != 200 {
		t.Fatalf("refreshed token refused: %d", resp.StatusCode)
	}

	// Timeout over gRPC: the new end reaches the worker and the session.
	c.cp.json(t, "POST", "/sandboxes/"+inUS.SandboxID+"/timeout", api.TimeoutRequest{Timeout: 1200}, 204, nil)
	onWorker, _ := us.mgr.Get(context.Background(), inUS.SandboxID)
	if d := time.Until(onWorker.EndAt); d < 1190*time.Second {
		t.Fatalf("worker end time not moved: %s", d)
	}
	sess, _ := c.st.Session(context.Background(), inUS.SandboxID)
	if sess.EndAt == nil || sess.EndAt.Sub(onWorker.EndAt).Abs() > time.Millisecond {
		t.Fatalf("session end %v, worker %v", sess.EndAt, onWorker.EndAt)
	}

	// The registry (internal addresses) is for admin-scoped keys only.
	resp, body = c.cp.do(t, "GET", "/workers", nil)
	wantError(t, resp, body, 403, "insufficient_scope")
	var workers []map[string]any
	c.admin.json(t, "GET", "/workers", nil, 200, &workers)
	if len(workers) != 2 || workers[0]["region"] != "eu" || workers[1]["region"] != "us" {
		t.Fatalf("workers %v", workers)
	}
	for _, k := range []string{"worker_id", "region", "grpc_addr", "http_addr", "capacity", "current", "cpu_pct", "mem_pct"} {
		if _, ok := workers[0][k]; !ok {
			t.Errorf("GET /workers lacks %s: %v", k, workers[0])
		}
	}
	var list []api.Sandbox
	c.cp.json(t, "GET", "/sandboxes", nil, 200, &list)
	if len(list) != 3 {
		t.Fatalf("list %d sandboxes", len(list))
	}

	// DELETE over gRPC; the session stops.
	resp, _ = c.cp.do(t, "DELETE", "/sandboxes/"+inUS.SandboxID, nil)
	if resp.StatusCode != 204 {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	if _, err := us.mgr.Get(context.Background(), inUS.SandboxID); err == nil {
		t.Fatal("sandbox still on its worker after delete")
	}
	var rows []sessions.Row
	c.cp.json(t, "GET", "/sessions?status=stopped", nil, 200, &rows)
	if len(rows) != 1 || rows[0].SandboxID != inUS.SandboxID || rows[0].StoppedAt == nil {
		t.Fatalf("stopped sessions %+v", rows)
	}
	resp, body = c.cp.do(t, "GET", "/sandboxes/"+inUS.SandboxID, nil)
	wantError(t, resp, body, 404, "sandbox_not_found")

	// A region without workers.
	resp, body = c.cp.do(t, "POST", "/sandboxes", strings.NewReader(`{"template":"busybox","region":"ap"}`))
	wantError(t, resp, body, 503, "no_worker_available")
	// A worker's own refusal passes through.
	resp, body = c.cp.do(t, "POST", "/sandboxes", strings.NewReader(`{"template":"nope","region":"us"}`))
	wantError(t, resp, body, 400, "template_not_found")
	resp, body = c.cp.do(t, "POST", "/sandboxes", strings.NewReader(`{"template":"registry.example.com/x:1","region":"us"}`))
	wantError(t, resp, body, 403, "registry_not_allowed")
	if n := counter(t, c.reg, "opensandbox_placement_decisions_total", map[string]string{"result": "placed"}); n != 3 {
		t.Errorf("placed decisions %v, want 3", n)
	}
}

// Quotas, key states and org isolation.
func TestServerModeQuotaKeysAndOrgs(t *testing.T) {
	c := startCluster(t, nil)
	c.startWorker(t, workerOpts{region: "eu"})
	ctx := context.Background()
	small, smallKey := newOrg(t, c.st, "small", 1, 60)
	sk := &stack{url: c.cp.url, key: smallKey}

	var sb api.Sandbox
	sk.json(t, "POST", "/sandboxes", api.SandboxConfig{TemplateID: "busybox"}, 201, &sb)
	if d := sb.EndAt.Sub(sb.StartedAt); d != 60*time.Second {
		t.Fatalf("default lifetime not capped at the org's maximum: %s", d)
	}
	resp, body := sk.do(t, "POST", "/sandboxes", strings.NewReader(`{"template":"busybox"}`))
	wantError(t, resp, body, 429, "quota_exceeded")
	if !strings.Contains(string(body), "concurrent sandbox limit reached") {
		t.Fatalf("quota message: %s", body)
	}
	resp, body = c.cp.do(t, "POST", "/sandboxes", strings.NewReader(`{"template":"busybox","timeout":7200}`))
	wantError(t, resp, body, 400, "invalid_argument")
	resp, body = sk.do(t, "POST", "/sandboxes/"+sb.SandboxID+"/timeout", strings.NewReader(`{"timeout":61}`))
	wantError(t, resp, body, 400, "invalid_argument")

	// Other orgs do not see it, not in lists, not by id.
	resp, body = c.cp.do(t, "GET", "/sandboxes/"+sb.SandboxID, nil)
	wantError(t, resp, body, 404, "sandbox_not_found")
	resp, body = c.cp.do(t, "DELETE", "/sandboxes/"+sb.SandboxID, nil)
	wantError(t, resp, body, 404, "sandbox_not_found")
	var rows []sessions.Row
	c.cp.json(t, "GET", "/sessions", nil, 200, &rows)
	if len(rows) != 0 {
		t.Fatalf("acme sees %d sessions of another org", len(rows))
	}
	sk.json(t, "GET", "/sessions?status=running", nil, 200, &rows)
	if len(rows) != 1 || rows[0].SandboxID != sb.SandboxID || rows[0].OrgID != small.ID {
		t.Fatalf("small's sessions %+v", rows)
	}
	resp, body = sk.do(t, "GET", "/sessions?status=bogus", nil)
	wantError(t, resp, body, 400, "invalid_argument")

	// A sandbox that reaches its end on the worker is gone through the
	// control plane too, and its session is closed.
	var short api.Sandbox
	c.cp.json(t, "POST", "/sandboxes", api.SandboxConfig{TemplateID: "busybox", Timeout: 1}, 201, &short)
	pollUntil(t, 20*time.Second, "the 1 s sandbox to end", func() bool {
		resp, _ := c.cp.do(t, "GET", "/sandboxes/"+short.SandboxID, nil)
		return resp.StatusCode == 404
	})
	if s, _ := c.st.Session(ctx, short.SandboxID); s.Status != api.StatusStopped {
		t.Fatalf("session of an ended sandbox: %+v", s)
	}

	// Deleting frees the slot.
	resp, _ = sk.do(t, "DELETE", "/sandboxes/"+sb.SandboxID, nil)
	if resp.StatusCode != 204 {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	sk.json(t, "POST", "/sandboxes", api.SandboxConfig{TemplateID: "busybox"}, 201, &sb)

	// Key states: missing 401, unknown/revoked/expired 403, read-only scope.
	for _, tc := range []struct {
		name, key string
		status    int
	}{{"missing", "", 401}, {"unknown", "osb_nope", 403}} {
		resp, _ := (&stack{url: c.cp.url, key: tc.key}).do(t, "GET", "/sandboxes", nil)
		if resp.StatusCode != tc.status {
			t.Errorf("%s key: %d, want %d", tc.name, resp.StatusCode, tc.status)
		}
	}
	past := time.Now().Add(-time.Minute)
	expired := &stack{url: c.cp.url, key: newKey(t, c.st, small, func(k *store.APIKey) { k.ExpiresAt = &past })}
	resp, body = expired.do(t, "GET", "/sandboxes", nil)
	wantError(t, resp, body, 403, "forbidden")
	reader := &stack{url: c.cp.url, key: newKey(t, c.st, small, func(k *store.APIKey) { k.Scopes = []string{"sandboxes:read"} })}
	reader.json(t, "GET", "/sandboxes", nil, 200, nil)
	resp, body = reader.do(t, "POST", "/sandboxes", strings.NewReader(`{}`))
	wantError(t, resp, body, 403, "insufficient_scope")
	sk.json(t, "GET", "/sandboxes", nil, 200, nil)
	if _, err := c.st.RevokeKey(ctx, store.VisiblePrefix(smallKey)); err != nil {
		t.Fatal(err)
	}
	resp, body = sk.do(t, "GET", "/sandboxes", nil)
	wantError(t, resp, body, 403, "forbidden")
	if !strings.Contains(string(body), "revoked") {
		t.Fatalf("revoked key answer: %s", body)
	}
	// The query-parameter form of the key works too.
	resp, _ = (&stack{url: c.cp.url}).do(t, "GET", "/sandboxes?api_key="+c.token, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("?api_key=: %d", resp.StatusCode)
	}
	if n := counter(t, c.reg, "opensandbox_auth_failures_total", map[string]string{"reason": "revoked"}); n != 1 {
		t.Errorf("revoked auth failures %v", n)
	}
}

// A worker that answers "full" is skipped for the next; when every worker
// is full the answer is 503 no_worker_available.
func TestServerModeFullWorkerSkipped(t *testing.T) {
	// The workers beat once, so they must not go stale while ten creates
	// run on a loaded machine.
	c := startCluster(t, func(cfg *Config) { cfg.StaleAfter = 5 * time.Minute })
	fillOne := func(m *sandbox.Manager) {
		if _, err := m.Create(context.Background(), api.SandboxConfig{TemplateID: "busybox"}, sandbox.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// The registry believes "a" is empty (its only beat came before it filled
	// up), so placement prefers it over "b" (1 of 10 used).
	a := c.startWorker(t, workerOpts{region: "eu", capacity: 1, heartbeat: time.Hour})
	fillOne(a.mgr)
	b := c.startWorker(t, workerOpts{region: "eu", capacity: 10, heartbeat: time.Hour, before: fillOne})

	var sb api.Sandbox
	c.cp.json(t, "POST", "/sandboxes", api.SandboxConfig{TemplateID: "busybox"}, 201, &sb)
	if sb.WorkerID != b.id {
		t.Fatalf("placed on %s, want %s", sb.WorkerID, b.id)
	}
	if n := counter(t, c.reg, "opensandbox_placement_decisions_total", map[string]string{"result": "worker_full"}); n != 1 {
		t.Fatalf("worker_full decisions %v, want 1", n)
	}
	for range 8 {
		c.cp.json(t, "POST", "/sandboxes", api.SandboxConfig{TemplateID: "busybox"}, 201, &sb)
	}
	resp, body := c.cp.do(t, "POST", "/sandboxes", strings.NewReader(`{"template":"busybox"}`))
	wantError(t, resp, body, 503, "no_worker_available")
	if a.mgr.Count() != 1 || b.mgr.Count() != 10 {
		t.Fatalf("counts a=%d b=%d", a.mgr.Count(), b.mgr.Count())
	}
}

// The worker's gRPC port refuses calls without the cluster secret, and its
// /metrics needs the secret too.
func TestWorkerRefusesUnauthenticated(t *testing.T) {
	c := startCluster(t, nil)
	w := c.startWorker(t, workerOpts{region: "eu"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, opts := range [][]grpc.DialOption{
		{grpc.WithTransportCredentials(insecure.NewCredentials())},
		{grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(staticCreds("Bearer wrong-secret-0123456789"))},
	} {
		cc, err := grpc.NewClient(w.grpc, opts...)
		if err != nil {
			t.Fatal(err)
		}
		cl := workerv1.NewSandboxWorkerClient(cc)
		_, err = cl.CreateSandbox(ctx, &workerv1.CreateSandboxRequest{Config: &workerv1.SandboxConfig{Template: "busybox"}})
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("create without credentials: %v", err)
		}
		_, err = cl.ListSandboxes(ctx, &workerv1.ListSandboxesRequest{})
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("list without credentials: %v", err)
		}
		cc.Close()
	}
	if w.mgr.Count() != 0 {
		t.Fatal("an unauthenticated call created a sandbox")
	}
	cc, _ := grpcx.NewClient(w.grpc, grpcx.DialOptions{Secret: testWorkerSecret})
	defer cc.Close()
	if _, err := workerv1.NewSandboxWorkerClient(cc).ListSandboxes(ctx, &workerv1.ListSandboxesRequest{}); err != nil {
		t.Fatalf("authenticated list: %v", err)
	}
	for key, want := range map[string]int{"": 401, "wrong": 403, testWorkerSecret: 200} {
		req, _ := http.NewRequest("GET", w.url+"/metrics", nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("worker /metrics with %q: %d, want %d", key, resp.StatusCode, want)
		}
	}
}

type staticCreds string

func (s staticCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": string(s)}, nil
}
func (staticCreds) RequireTransportSecurity() bool { return false }

// In server mode the dashboard's sandbox routes go through placement to a
// worker, for the signed-in user's org. The answers carry no sandbox token:
// one could not be revoked with the session, and the dashboard has no use
// for the data path.
func TestServerModeDashboardSandboxes(t *testing.T) {
	c := startCluster(t, func(cfg *Config) {
		cfg.WorkOSClientID, cfg.WorkOSAPIKey = "client_01", "sk_test"
		cfg.WorkOSAPIURL, cfg.PublicURL = "https://workos.invalid", "http://127.0.0.1:1"
	})
	w := c.startWorker(t, workerOpts{region: "eu"})
	ctx := context.Background()
	var userID string
	if err := c.st.Pool().QueryRow(ctx, `INSERT INTO users (org_id, email) VALUES ($1, 'm@acme.test') RETURNING id::text`, c.org.ID).Scan(&userID); err != nil {
		t.Fatal(err)
	}
	token := "server-mode-dashboard-session"
	if err := c.st.CreateDashboardSession(ctx, userID, store.HashKey(token), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	dash := &stack{url: c.cp.url}
	cookie := []string{"Cookie", "osb_session=" + token, "X-OSB-Dashboard", "1", "Content-Type", "application/json"}
	resp, body := dash.do(t, "POST", "/dashboard/api/sandboxes", strings.NewReader(`{"templateID":"busybox"}`), cookie...)
	var sb api.Sandbox
	if resp.StatusCode != 201 {
		t.Fatalf("create from the dashboard: %d %s", resp.StatusCode, body)
	}
	decode(t, body, &sb)
	if sb.WorkerID != w.id || sb.Token != "" || sb.ConnectURL != "" {
		t.Fatalf("dashboard create answered %+v: want it on %s without connectURL and token", sb, w.id)
	}
	if org, _ := w.mgr.OrgOf(sb.SandboxID); org != c.org.ID {
		t.Fatalf("sandbox org %q, want %q", org, c.org.ID)
	}
	if resp, body := dash.do(t, "POST", "/dashboard/api/sandboxes/"+sb.SandboxID+"/token", nil, cookie...); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("token refresh through the dashboard: %d %s", resp.StatusCode, body)
	}
	if resp, body := dash.do(t, "DELETE", "/dashboard/api/sandboxes/"+sb.SandboxID, nil, cookie...); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("kill from the dashboard: %d %s", resp.StatusCode, body)
	}
	if _, err := w.mgr.Get(ctx, sb.SandboxID); err == nil {
		t.Fatal("the sandbox killed from the dashboard still runs on its worker")
	}
}
