package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/sessions"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/store"
	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/shared/obs"
	"github.com/opensandbox/opensandbox/services/shared/pgtest"
	"github.com/opensandbox/opensandbox/services/worker/sandbox"
	"github.com/opensandbox/opensandbox/services/worker/sandboxtest"
)

// startCombinedPG is a combined server with PostgreSQL: stored API keys,
// quotas and session rows, plus the static key; revoked keys are read every
// half second.
func startCombinedPG(t *testing.T) (*stack, *store.Store) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := store.Open(ctx, pgtest.NewDatabase(t), true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	rt := sandboxtest.Runtime(t)
	cfg := Config{Mode: ModeCombined, APIKey: "static-admin-key", MaxUpload: 1 << 30, Sandbox: sandboxtest.Config(t)}
	reg := obs.NewRegistry()
	pg := newPGParts(sandboxtest.Logger(t), reg, st, cfg)
	pg.followRevocations(ctx, sandboxtest.Logger(t), reg, 500*time.Millisecond)
	cfg.Sandbox.OnDestroy = pg.tracker.Destroyed
	mgr := sandboxtest.Manager(t, rt, cfg.Sandbox)
	a := newCombinedApp(sandboxtest.Logger(t), reg, mgr, cfg, pg, nil)
	ln := listen(t)
	go a.Listener(ln)
	t.Cleanup(func() { a.Shutdown() })
	return &stack{url: "http://" + ln.Addr().String(), key: cfg.APIKey, mgr: mgr}, st
}

func TestCombinedWithPostgres(t *testing.T) {
	admin, st := startCombinedPG(t)
	org, key := newOrg(t, st, "team", 2, 120)
	s := &stack{url: admin.url, key: key, mgr: admin.mgr}
	other := &stack{url: admin.url, key: func() string { _, k := newOrg(t, st, "other", 5, 600); return k }()}

	var a, b api.Sandbox
	s.json(t, "POST", "/sandboxes", api.SandboxConfig{TemplateID: "busybox"}, 201, &a)
	if a.ConnectURL != "" || a.Token != "" {
		t.Fatalf("combined mode must not hand out connectURL/token: %+v", a)
	}
	if org, _ := admin.mgr.OrgOf(a.SandboxID); org == "" {
		t.Fatal("sandbox created without its org")
	}
	s.json(t, "POST", "/sandboxes", api.SandboxConfig{TemplateID: "busybox", Timeout: 1}, 201, &b)
	resp, body := s.do(t, "POST", "/sandboxes", strings.NewReader(`{"template":"busybox"}`))
	wantError(t, resp, body, 429, "quota_exceeded")
	resp, body = s.do(t, "POST", "/sandboxes/"+a.SandboxID+"/timeout", strings.NewReader(`{"timeout":121}`))
	wantError(t, resp, body, 400, "invalid_argument")
	s.json(t, "POST", "/sandboxes/"+a.SandboxID+"/commands", api.ProcessConfig{Cmd: "true"}, 200, nil)
	// The interactive routes are there with PostgreSQL too (a streamed run).
	resp, body = s.do(t, "POST", "/sandboxes/"+a.SandboxID+"/commands", strings.NewReader(`{"cmd":"echo streamed","stream":true}`))
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") || !strings.Contains(string(body), `"type":"exit"`) {
		t.Fatalf("streamed run: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}

	// Another org sees nothing of this one.
	resp, body = other.do(t, "GET", "/sandboxes/"+a.SandboxID, nil)
	wantError(t, resp, body, 404, "sandbox_not_found")
	var list []api.Sandbox
	other.json(t, "GET", "/sandboxes", nil, 200, &list)
	if len(list) != 0 {
		t.Fatalf("other org lists %d sandboxes", len(list))
	}

	// Kill marks the session stopped before the answer; the 1 s sandbox's
	// session is stopped by its timeout.
	resp, _ = s.do(t, "DELETE", "/sandboxes/"+a.SandboxID, nil)
	if resp.StatusCode != 204 {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	sess, err := st.Session(context.Background(), a.SandboxID)
	if err != nil || sess.Status != api.StatusStopped || sess.StoppedAt == nil || sess.OrgID != org.ID {
		t.Fatalf("killed session %+v %v", sess, err)
	}
	pollUntil(t, 20*time.Second, "the timed-out session to stop", func() bool {
		sess, _ := st.Session(context.Background(), b.SandboxID)
		return sess.Status == api.StatusStopped
	})
	var rows []sessions.Row
	s.json(t, "GET", "/sessions?status=stopped", nil, 200, &rows)
	if len(rows) != 2 {
		t.Fatalf("stopped sessions %+v", rows)
	}
	other.json(t, "GET", "/sessions", nil, 200, &rows)
	if len(rows) != 0 {
		t.Fatalf("other org sees %d sessions", len(rows))
	}
	// The static key still works beside stored keys and sees every org.
	admin.json(t, "GET", "/sessions", nil, 200, &rows)
	if len(rows) != 2 {
		t.Fatalf("static key sees %d sessions", len(rows))
	}
	var sb api.Sandbox
	admin.json(t, "POST", "/sandboxes", api.SandboxConfig{TemplateID: "busybox"}, 201, &sb)
	admin.json(t, "GET", "/metrics", nil, 200, nil)

	// Revoked → 403; missing → 401.
	if _, err := st.RevokeKey(context.Background(), store.VisiblePrefix(key)); err != nil {
		t.Fatal(err)
	}
	resp, body = s.do(t, "GET", "/sandboxes", nil)
	wantError(t, resp, body, 403, "forbidden")
	resp, body = (&stack{url: admin.url}).do(t, "GET", "/sandboxes", nil)
	wantError(t, resp, body, 401, "unauthenticated")
}

// combinedWithDashboard is a combined server with PostgreSQL and WorkOS
// configured (WorkOS itself unreachable: these tests do not sign in), with
// a sandbox manager on real Podman when sandboxes is set.
func combinedWithDashboard(t *testing.T, sandboxes bool) (*fiber.App, *store.Store, *sandbox.Manager) {
	st, err := store.Open(context.Background(), pgtest.NewDatabase(t), true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	cfg := Config{Mode: ModeCombined, APIKey: "static-admin-key", MaxUpload: 1 << 20, Sandbox: sandboxtest.Config(t),
		WorkOSClientID: "client_01", WorkOSAPIKey: "sk_test", WorkOSAPIURL: "https://workos.invalid", PublicURL: "http://127.0.0.1:1"}
	reg := obs.NewRegistry()
	pg := newPGParts(sandboxtest.Logger(t), reg, st, cfg)
	var mgr *sandbox.Manager
	if sandboxes {
		cfg.Sandbox.OnDestroy = pg.tracker.Destroyed
		mgr = sandboxtest.Manager(t, sandboxtest.Runtime(t), cfg.Sandbox)
	}
	return newCombinedApp(sandboxtest.Logger(t), reg, mgr, cfg, pg, nil), st, mgr
}

// With WorkOS configured the combined server serves the dashboard beside
// the API, and the API still takes only keys.
func TestCombinedServesTheDashboard(t *testing.T) {
	a, _, _ := combinedWithDashboard(t, false)
	const staticKey = "static-admin-key"
	get := func(path, key string) *http.Response {
		req := httptest.NewRequest("GET", path, nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := a.Test(req, -1)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if r := get("/dashboard/", ""); r.StatusCode != 200 || r.Header.Get("Content-Security-Policy") == "" {
		t.Fatalf("/dashboard/: %s", r.Status)
	}
	if r := get("/auth/login", ""); r.StatusCode != 302 || !strings.HasPrefix(r.Header.Get("Location"), "https://workos.invalid/user_management/authorize?") {
		t.Fatalf("/auth/login: %s to %q", r.Status, r.Header.Get("Location"))
	}
	if r := get("/dashboard/api/me", ""); r.StatusCode != 401 {
		t.Fatalf("/dashboard/api/me without a session: %s", r.Status)
	}
	if r := get("/sessions", ""); r.StatusCode != 401 {
		t.Fatalf("/sessions without a key: %s", r.Status)
	}
	if r := get("/sessions", staticKey); r.StatusCode != 200 {
		t.Fatalf("/sessions with the key: %s", r.Status)
	}
}

// The dashboard's sandbox routes act for the signed-in user's org only, and
// change nothing without the CSRF header. (The sign-in itself is tested in
// internal/dashboard; here the session is made directly.)
func TestDashboardManagesTheOrgsSandboxes(t *testing.T) {
	ctx := context.Background()
	a, st, mgr := combinedWithDashboard(t, true)
	ln := listen(t)
	go a.Listener(ln)
	t.Cleanup(func() { a.Shutdown() })
	url := "http://" + ln.Addr().String()

	org, _ := newOrg(t, st, "dash", 5, 600)
	_, otherKey := newOrg(t, st, "other", 5, 600)
	var userID string
	if err := st.Pool().QueryRow(ctx, `INSERT INTO users (org_id, email) VALUES ($1, 'm@dash.test') RETURNING id::text`, org.ID).Scan(&userID); err != nil {
		t.Fatal(err)
	}
	token := "dashboard-session-token-for-the-test"
	if err := st.CreateDashboardSession(ctx, userID, store.HashKey(token), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	dash := func(method, path, body string, csrf bool) (int, []byte) {
		req, _ := http.NewRequest(method, url+"/dashboard/api"+path, strings.NewReader(body))
		req.Header.Set("Cookie", "osb_session="+token)
		req.Header.Set("Content-Type", "application/json")
		if csrf {
			req.Header.Set("X-OSB-Dashboard", "1")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}

	if code, body := dash("POST", "/sandboxes", `{"templateID":"busybox"}`, false); code != http.StatusForbidden {
		t.Fatalf("create without the CSRF header: %d %s", code, body)
	}
	code, body := dash("POST", "/sandboxes", `{"templateID":"busybox"}`, true)
	var mine api.Sandbox
	if code != http.StatusCreated || json.Unmarshal(body, &mine) != nil {
		t.Fatalf("create from the dashboard: %d %s", code, body)
	}
	if o, _ := mgr.OrgOf(mine.SandboxID); o != org.ID {
		t.Fatalf("dashboard sandbox belongs to org %q, want %q", o, org.ID)
	}
	theirs := &stack{url: url, key: otherKey}
	var other api.Sandbox
	theirs.json(t, "POST", "/sandboxes", api.SandboxConfig{TemplateID: "busybox"}, 201, &other)
	t.Cleanup(func() { mgr.Kill(context.Background(), other.SandboxID) })

	var listed []api.Sandbox
	code, body = dash("GET", "/sandboxes", "", false)
	if code != 200 || json.Unmarshal(body, &listed) != nil || len(listed) != 1 || listed[0].SandboxID != mine.SandboxID {
		t.Fatalf("dashboard list: %d %s", code, body)
	}
	if code, _ := dash("DELETE", "/sandboxes/"+other.SandboxID, "", true); code != http.StatusNotFound {
		t.Fatalf("killing another org's sandbox: %d", code)
	}
	if code, _ := dash("DELETE", "/sandboxes/"+mine.SandboxID, "", false); code != http.StatusForbidden {
		t.Fatalf("kill without the CSRF header: %d", code)
	}
	if code, body := dash("DELETE", "/sandboxes/"+mine.SandboxID, "", true); code != http.StatusNoContent {
		t.Fatalf("kill from the dashboard: %d %s", code, body)
	}
	if _, err := mgr.Get(ctx, other.SandboxID); err != nil {
		t.Fatalf("the other org's sandbox after the refused kill: %v", err)
	}
	s, err := st.Session(ctx, mine.SandboxID)
	if err != nil || s.Status != api.StatusStopped {
		t.Fatalf("session of the killed sandbox: %+v, %v", s, err)
	}
}
