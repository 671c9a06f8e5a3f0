package dashboard

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/keyauth"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/sessions"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/store"
	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/shared/httpx"
	"github.com/opensandbox/opensandbox/services/shared/pgtest"
	"github.com/opensandbox/opensandbox/services/worker/httpapi"
	"github.com/opensandbox/opensandbox/services/worker/sandbox"
	"github.com/opensandbox/opensandbox/services/worker/sandboxtest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// testServer is the dashboard as the control plane mounts it (before the
// API-key middleware, which guards GET /sessions here), on a real port,
// with PostgreSQL and the WorkOS contract fake; with sandboxes, the
// combined mode's sandbox routes on real Podman as well.
type testServer struct {
	url    string
	st     *store.Store
	workos *fakeWorkOS
	dash   *Dashboard
	mgr    *sandbox.Manager // with sandboxes
}

func newTestServer(t *testing.T) *testServer { return startTestServer(t, false) }

func startTestServer(t *testing.T, sandboxes bool) *testServer {
	st, err := store.Open(context.Background(), pgtest.NewDatabase(t), true) // migrated
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{url: "http://" + ln.Addr().String(), st: st, workos: newFakeWorkOS(t)}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	app := httpx.NewApp(log, httpx.NewMetrics(reg))
	tracker := sessions.NewTracker(log, st, time.Minute)
	s.dash = New(log, st, Config{WorkOS: s.workos.client(), PublicURL: s.url}, reg)
	var lifecycle func(fiber.Router)
	if sandboxes {
		cfg := sandboxtest.Config(t)
		cfg.OnDestroy = tracker.Destroyed
		s.mgr = sandboxtest.Manager(t, sandboxtest.Runtime(t), cfg)
		lifecycle = httpapi.New(sessions.Track(s.mgr, tracker), 1<<20).MountLifecycle
	}
	s.dash.Mount(app, tracker.Handler(), lifecycle)
	keyed := app.Group("", keyauth.New(log, "", st, nil).Middleware())
	keyed.Get("/sessions", tracker.Handler())
	go app.Listener(ln)
	t.Cleanup(func() { app.Shutdown() })
	return s
}

// browser is an HTTP client with cookies that follows redirects.
func (s *testServer) browser(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 20 * time.Second}
}

// signIn runs the whole sign-in as a browser: /auth/login -> WorkOS ->
// /auth/callback -> /dashboard/.
func (s *testServer) signIn(t *testing.T, c *http.Client, who signIn) {
	s.workos.mu.Lock()
	s.workos.next = who
	s.workos.mu.Unlock()
	resp, err := c.Get(s.url + "/auth/login")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/dashboard/" || !strings.Contains(string(body), "app.js") {
		t.Fatalf("sign-in ended at %s with %s: %.200s", resp.Request.URL, resp.Status, body)
	}
}

func do(t *testing.T, c *http.Client, method, url, body string, csrf bool, out any) int {
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if csrf {
		req.Header.Set(csrfHeader, "1")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode < 300 {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
	}
	return resp.StatusCode
}

func TestSignInKeysAndSessions(t *testing.T) {
	s := newTestServer(t)
	ctx := context.Background()
	c := s.browser(t)
	if code := do(t, c, "GET", s.url+"/dashboard/api/me", "", false, nil); code != http.StatusUnauthorized {
		t.Fatalf("me before sign-in: %d", code)
	}
	s.workos.orgs["org_01ACME"] = "Acme Research"
	s.signIn(t, c, signIn{UserID: "user_01ADA", Email: "ada@acme.test", First: "Ada", OrgID: "org_01ACME"})
	var me meJSON
	if code := do(t, c, "GET", s.url+"/dashboard/api/me", "", false, &me); code != 200 {
		t.Fatalf("me: %d", code)
	}
	if me.User.Email != "ada@acme.test" || me.User.Name != "Ada" || me.User.Role != "owner" || me.Org.Name != "Acme Research" {
		t.Fatalf("me: %+v", me)
	}
	if got := testutil.ToFloat64(s.dash.logins.WithLabelValues("ok")); got != 1 {
		t.Fatalf("ok sign-ins counted %v", got)
	}

	// A colleague signing in through the same WorkOS organization joins the
	// org as a member; signing in again changes nothing.
	c2 := s.browser(t)
	s.signIn(t, c2, signIn{UserID: "user_01BOB", Email: "bob@acme.test", OrgID: "org_01ACME"})
	s.signIn(t, c2, signIn{UserID: "user_01BOB", Email: "bob@acme.test", OrgID: "org_01ACME"})
	var me2 meJSON
	do(t, c2, "GET", s.url+"/dashboard/api/me", "", false, &me2)
	if me2.Org.ID != me.Org.ID || me2.User.Role != "member" {
		t.Fatalf("colleague: %+v (want member of %s)", me2, me.Org.ID)
	}

	// API keys: CSRF header required, then a key that works on the API.
	if code := do(t, c, "POST", s.url+"/dashboard/api/keys", `{"name":"ci"}`, false, nil); code != http.StatusForbidden {
		t.Fatalf("create without the CSRF header: %d", code)
	}
	for _, bad := range []string{`{"name":""}`, `{"name":"x","scopes":["admin"]}`, `{"name":"x","scopes":["*"]}`, `not json`} {
		if code := do(t, c, "POST", s.url+"/dashboard/api/keys", bad, true, nil); code != http.StatusBadRequest {
			t.Fatalf("create %s: %d, want 400", bad, code)
		}
	}
	var created struct {
		Key    keyJSON `json:"key"`
		Secret string  `json:"secret"`
	}
	if code := do(t, c, "POST", s.url+"/dashboard/api/keys", `{"name":"ci","scopes":["sandboxes:read"]}`, true, &created); code != http.StatusCreated {
		t.Fatalf("create: %d", code)
	}
	if !strings.HasPrefix(created.Secret, store.KeyPrefix) || created.Key.Name != "ci" || created.Key.Scopes[0] != "sandboxes:read" ||
		!strings.HasPrefix(created.Secret, created.Key.Prefix) {
		t.Fatalf("created %+v", created)
	}
	apiClient := &http.Client{Timeout: 10 * time.Second}
	useKey := func(key string) int {
		req, _ := http.NewRequest("GET", s.url+"/sessions", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := apiClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := useKey(created.Secret); code != 200 {
		t.Fatalf("the new key on GET /sessions: %d", code)
	}

	// Sessions: the org's only, newest first.
	other, err := s.st.CreateOrg(ctx, store.Org{Name: "Other", Slug: "other", MaxConcurrentSandboxes: 5, MaxSandboxTimeoutSec: 60})
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct{ org, sandbox string }{{me.Org.ID, "sb-acme-1"}, {other.ID, "sb-other"}, {me.Org.ID, "sb-acme-2"}} {
		r, err := s.st.Reserve(ctx, x.org, 10)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.st.Commit(ctx, r, store.Session{SandboxID: x.sandbox, OrgID: x.org, Template: "base", Region: "local", WorkerID: "w1",
			Status: api.StatusRunning, StartedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	var rows []sessions.Row
	if code := do(t, c, "GET", s.url+"/dashboard/api/sessions", "", false, &rows); code != 200 {
		t.Fatalf("sessions: %d", code)
	}
	if len(rows) != 2 || rows[0].SandboxID != "sb-acme-2" || rows[1].SandboxID != "sb-acme-1" {
		t.Fatalf("sessions %+v", rows)
	}
	if code := do(t, c, "GET", s.url+"/dashboard/api/sessions?status=bogus", "", false, nil); code != http.StatusBadRequest {
		t.Fatalf("bad status filter: %d", code)
	}

	// A sandbox's command history (written by the event syncer): the org's
	// sandboxes only, newest first.
	for i, x := range []struct{ sandbox, command string }{{"sb-acme-1", "ls"}, {"sb-other", "cat"}, {"sb-acme-1", "make"}} {
		addCommand(t, s, x.sandbox, x.command, i, time.Now().Add(time.Duration(i)*time.Second))
	}
	var cmds []commandJSON
	if code := do(t, c, "GET", s.url+"/dashboard/api/sessions/sb-acme-1/commands", "", false, &cmds); code != 200 {
		t.Fatalf("commands: %d", code)
	}
	if len(cmds) != 2 || cmds[0].Command != "make" || cmds[1].Command != "ls" || cmds[0].ExitCode != 2 || cmds[0].Args[0] != "-v" {
		t.Fatalf("commands %+v", cmds)
	}
	if code := do(t, c, "GET", s.url+"/dashboard/api/sessions/sb-other/commands", "", false, nil); code != http.StatusNotFound {
		t.Fatalf("another org's sandbox: %d", code)
	}
	if code := do(t, c, "GET", s.url+"/dashboard/api/sessions/sb-acme-1/commands?limit=0", "", false, nil); code != http.StatusBadRequest {
		t.Fatalf("limit 0: %d", code)
	}

	// Revoking: another org's key is not found; the org's own key stops working.
	otherSecret := store.NewKey()
	otherKey, err := s.st.CreateAPIKey(ctx, store.APIKey{OrgID: other.ID, Name: "theirs", Prefix: store.VisiblePrefix(otherSecret)}, store.HashKey(otherSecret))
	if err != nil {
		t.Fatal(err)
	}
	if code := do(t, c, "DELETE", s.url+"/dashboard/api/keys/"+otherKey.ID, "", true, nil); code != http.StatusNotFound {
		t.Fatalf("revoke another org's key: %d", code)
	}
	if code := do(t, c, "DELETE", s.url+"/dashboard/api/keys/"+created.Key.ID, "", false, nil); code != http.StatusForbidden {
		t.Fatalf("revoke without the CSRF header: %d", code)
	}
	// A member revokes the keys they made, not the owner's.
	if code := do(t, c2, "DELETE", s.url+"/dashboard/api/keys/"+created.Key.ID, "", true, nil); code != http.StatusForbidden {
		t.Fatalf("a member revoking the owner's key: %d", code)
	}
	var bobs struct {
		Key keyJSON `json:"key"`
	}
	if code := do(t, c2, "POST", s.url+"/dashboard/api/keys", `{"name":"bob's"}`, true, &bobs); code != http.StatusCreated || bobs.Key.CreatedBy != me2.User.ID {
		t.Fatalf("member creates a key: %d %+v", code, bobs.Key)
	}
	if code := do(t, c2, "DELETE", s.url+"/dashboard/api/keys/"+bobs.Key.ID, "", true, nil); code != http.StatusNoContent {
		t.Fatalf("a member revoking their own key: %d", code)
	}
	if code := do(t, c, "DELETE", s.url+"/dashboard/api/keys/"+created.Key.ID, "", true, nil); code != http.StatusNoContent {
		t.Fatalf("revoke: %d", code)
	}
	if code := useKey(created.Secret); code != http.StatusForbidden {
		t.Fatalf("revoked key on GET /sessions: %d", code)
	}
	if code := useKey(otherSecret); code != 200 {
		t.Fatalf("the other org's key after the failed revoke: %d", code)
	}
	var keys []keyJSON
	do(t, c, "GET", s.url+"/dashboard/api/keys", "", false, &keys)
	if len(keys) != 2 || keys[0].RevokedAt == nil || keys[1].RevokedAt == nil {
		t.Fatalf("keys after revoke: %+v", keys)
	}

	// Signing out ends the session for good.
	if code := do(t, c, "POST", s.url+"/auth/logout", "", true, nil); code != http.StatusNoContent {
		t.Fatalf("logout: %d", code)
	}
	if code := do(t, c, "GET", s.url+"/dashboard/api/me", "", false, nil); code != http.StatusUnauthorized {
		t.Fatalf("me after logout: %d", code)
	}
	if n := count(t, s, `SELECT count(*) FROM dashboard_sessions d JOIN users u ON u.id = d.user_id WHERE u.email = 'ada@acme.test'`); n != 0 {
		t.Fatalf("%d sessions left after logout", n)
	}
}

func count(t *testing.T, s *testServer, q string) int {
	var n int
	if err := s.st.Pool().QueryRow(context.Background(), q).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestSignInFailures(t *testing.T) {
	s := newTestServer(t)
	noRedirect := func() *http.Client {
		jar, _ := cookiejar.New(nil)
		return &http.Client{Jar: jar, Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	get := func(c *http.Client, url string) *http.Response {
		resp, err := c.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	// A callback without the state cookie (a forged or replayed link).
	c := noRedirect()
	if resp := get(c, s.url+"/auth/callback?code=x&state=y"); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("callback without state cookie: %s", resp.Status)
	}
	// The state of another login.
	resp := get(c, s.url+"/auth/login")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), s.workos.srv.URL+"/user_management/authorize?") {
		t.Fatalf("login: %s to %s", resp.Status, resp.Header.Get("Location"))
	}
	s.workos.next = signIn{UserID: "user_01EVE", Email: "eve@example.test"}
	code, _ := followAuthorize(t, resp.Header.Get("Location"))
	if resp := get(c, s.url+"/auth/callback?code="+code+"&state=not-the-state"); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("callback with a wrong state: %s", resp.Status)
	}
	// A code WorkOS refuses (already used, or made up): 401, and no session.
	resp = get(c, s.url+"/auth/login")
	_, state := followAuthorize(t, resp.Header.Get("Location"))
	if resp := get(c, s.url+"/auth/callback?code=made-up&state="+state); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("callback with a refused code: %s", resp.Status)
	}
	// Signed in, but not let in: an unverified email, and a new user
	// outside any organization (personal orgs are off here). 403 each.
	s.workos.orgs["org_01Z"] = "Zeta"
	for _, who := range []signIn{{UserID: "user_01UNV", Email: "unv@example.test", OrgID: "org_01Z", Unverified: true}, {UserID: "user_01LONE", Email: "lone@example.test"}} {
		s.workos.next = who
		resp = get(c, s.url+"/auth/login")
		code, state := followAuthorize(t, resp.Header.Get("Location"))
		if resp := get(c, s.url+"/auth/callback?code="+code+"&state="+state); resp.StatusCode != http.StatusForbidden {
			t.Fatalf("%+v: %s, want 403", who, resp.Status)
		}
	}
	// Our own credentials refused by WorkOS: a server fault (500), not the user's.
	s.workos.mu.Lock()
	s.workos.apiKey = "sk_test_rotated"
	s.workos.mu.Unlock()
	resp = get(c, s.url+"/auth/login")
	code, state = followAuthorize(t, resp.Header.Get("Location"))
	if resp := get(c, s.url+"/auth/callback?code="+code+"&state="+state); resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("callback with a refused client secret: %s", resp.Status)
	}
	// WorkOS down: 503, and no session.
	resp = get(c, s.url+"/auth/login")
	code, state = followAuthorize(t, resp.Header.Get("Location"))
	s.workos.srv.Close()
	if resp := get(c, s.url+"/auth/callback?code="+code+"&state="+state); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("callback with WorkOS down: %s", resp.Status)
	}
	if n := count(t, s, `SELECT count(*) FROM dashboard_sessions`); n != 0 {
		t.Fatalf("%d sessions after failed sign-ins", n)
	}
	if n := count(t, s, `SELECT count(*) FROM users`); n != 0 {
		t.Fatalf("%d users after failed sign-ins", n)
	}
	for _, r := range []string{"bad_state", "refused", "unavailable", "error"} {
		if testutil.ToFloat64(s.dash.logins.WithLabelValues(r)) == 0 {
			t.Errorf("sign-ins failing with %s not counted", r)
		}
	}
	// An expired session is refused and its cookie cleared.
	token := randomToken()
	u, _, err := s.st.ProvisionUser(context.Background(), store.Identity{WorkOSUserID: "user_01OLD", Email: "old@example.test", EmailVerified: true}, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.st.CreateDashboardSession(context.Background(), u.ID, store.HashKey(token), time.Now().Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", s.url+"/dashboard/api/me", nil)
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: token})
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusUnauthorized || !strings.Contains(r.Header.Get("Set-Cookie"), sessionCookie+"=;") {
		t.Fatalf("expired session: %s, Set-Cookie %q", r.Status, r.Header.Get("Set-Cookie"))
	}
}

func TestPagesCarrySecurityHeaders(t *testing.T) {
	s := newTestServer(t)
	for _, path := range []string{"/dashboard/", "/dashboard/app.js", "/dashboard/app.css"} {
		resp, err := http.Get(s.url + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Security-Policy") != "default-src 'self'; frame-ancestors 'none'" ||
			resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("%s: %s %v", path, resp.Status, resp.Header)
		}
	}
	resp, err := http.Get(s.url + "/dashboard/nope.js")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("missing file: %s", resp.Status)
	}
}

// addCommand writes a command_logs row as the event syncer does.
func addCommand(t *testing.T, s *testServer, sandboxID, command string, exitCode int, at time.Time) {
	_, err := s.st.Pool().Exec(context.Background(), `INSERT INTO command_logs (event_id, sandbox_id, command, args, exit_code, duration_ms, stdout_len, created_at)
		VALUES ($1, $2, $3, '{-v}', $4, 12, 2048, $5)`, randomToken(), sandboxID, command, exitCode, at)
	if err != nil {
		t.Fatal(err)
	}
}
