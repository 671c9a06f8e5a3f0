package dashboard

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/sessions"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/store"
	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/worker/sandbox"
	"github.com/opensandbox/opensandbox/services/worker/sandboxtest"
)

// chromium is Debian's browser (`make test` installs it).
const chromium = "/usr/bin/chromium"

// newBrowser starts headless Chromium for one test. The flags keep it off
// the network: this machine has none, and Chromium's background services
// would otherwise try.
func newBrowser(t *testing.T) context.Context {
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("%s: %v (make test installs Debian's chromium package)", chromium, err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	return ctx
}

// The whole dashboard in a real browser: sign in through WorkOS, see the
// org's sandboxes and a sandbox's commands, kill a real sandbox, make an API
// key that works on the API, revoke it, sign out.
func TestDashboardInBrowser(t *testing.T) {
	s := startTestServer(t, true)
	ctx := context.Background()
	who := signIn{UserID: "user_01GRACE", Email: "grace@navy.test", First: "Grace", Last: "Hopper"}
	// The user exists already (signed in before) and has a finished
	// sandbox with a command, and a running one (on Podman).
	_, org, err := s.st.ProvisionUser(ctx, store.Identity{WorkOSUserID: who.UserID, Email: who.Email, EmailVerified: true, Name: "Grace Hopper"}, true)
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.st.Reserve(ctx, org.ID, 10)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.st.Commit(ctx, r, store.Session{SandboxID: "sb-browser", OrgID: org.ID, Template: "base", Region: "local",
		WorkerID: "w1", Status: api.StatusRunning, StartedAt: time.Now().Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.st.EndSession(ctx, "sb-browser", api.StatusStopped, ""); err != nil {
		t.Fatal(err)
	}
	addCommand(t, s, "sb-browser", "python3", 1, time.Now())
	live, err := sessions.Track(s.mgr, sessions.NewTracker(sandboxtest.Logger(t), s.st, time.Minute)).Create(ctx,
		api.SandboxConfig{TemplateID: "busybox"}, sandbox.CreateOptions{OrgID: org.ID})
	if err != nil {
		t.Fatal(err)
	}
	s.workos.next = who

	b := newBrowser(t)
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(b, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(b, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return v
	}
	do("sign in",
		chromedp.Navigate(s.url+"/dashboard/"),
		chromedp.WaitVisible(chromedp.CSS("#signed-out")),
		chromedp.Click(chromedp.CSS("#signin")),
		chromedp.WaitVisible(chromedp.CSS("#signed-in")),
		chromedp.WaitVisible(chromedp.CSS(`#sessions-table tr[data-sandbox-id="sb-browser"]`)),
	)
	email, orgName, status := text("#user-email"), text("#org-name"), text(`#sessions-table tr[data-sandbox-id="sb-browser"] .status`)
	if email != who.Email || orgName != org.Name || status != "stopped" {
		t.Fatalf("page shows email %q org %q status %q; want %q %q stopped", email, orgName, status, who.Email, org.Name)
	}

	// Kill the live sandbox from its row.
	liveRow := `#sessions-table tr[data-sandbox-id="` + live.SandboxID + `"]`
	if _, err := chromedp.Run(b, chromedp.Evaluate[any](`window.confirm = () => true`)); err != nil { // the page asks first
		t.Fatal(err)
	}
	do("kill the live sandbox", chromedp.Click(chromedp.CSS(liveRow+" button.kill")))
	if _, err := chromedp.Run(b, chromedp.Poll[bool](`document.querySelector('`+liveRow+` .status')?.textContent === "stopped"`,
		chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		t.Fatalf("killed sandbox never shown stopped: %v", err)
	}
	if _, err := s.mgr.Get(ctx, live.SandboxID); err == nil {
		t.Fatal("the sandbox killed in the browser still runs")
	}

	do("open the sandbox's command history",
		chromedp.Click(chromedp.CSS(`#sessions-table tr[data-sandbox-id="sb-browser"]`)),
		chromedp.WaitVisible(chromedp.CSS("#commands-table tbody tr code")),
	)
	if line, exit := text("#commands-table tbody tr code"), text("#commands-table tbody tr .exit"); line != "python3 -v" || exit != "1" {
		t.Fatalf("command history shows %q exit %q; want python3 -v, exit 1", line, exit)
	}

	do("create a key",
		chromedp.Click(chromedp.CSS("#tab-keys")),
		chromedp.WaitVisible(chromedp.CSS("#create-key-form")),
		chromedp.SendKeys(chromedp.CSS("#key-name"), "from the browser"),
		chromedp.SetValue(chromedp.CSS("#key-scope"), "sandboxes:write"),
		chromedp.Click(chromedp.CSS("#create-key")),
		chromedp.WaitVisible(chromedp.CSS("#new-key-secret")),
	)
	secret := text("#new-key-secret")
	if !strings.HasPrefix(secret, store.KeyPrefix) {
		t.Fatalf("secret shown: %q", secret)
	}
	if code := sessionsWithKey(t, s, secret); code != http.StatusOK {
		t.Fatalf("the key made in the browser on GET /sessions: %d", code)
	}
	keys, err := s.st.ListKeys(ctx, org.ID)
	if err != nil || len(keys) != 1 || keys[0].Name != "from the browser" || keys[0].Scopes[0] != "sandboxes:write" {
		t.Fatalf("keys in PostgreSQL: %+v, %v", keys, err)
	}

	row := `#keys-table tr[data-key-id="` + keys[0].ID + `"]`
	do("dismiss the secret", chromedp.Click(chromedp.CSS("#new-key-done")), chromedp.WaitNotVisible(chromedp.CSS("#new-key")))
	do("revoke the key", chromedp.Click(chromedp.CSS(row+" button.revoke")))
	if _, err := chromedp.Run(b, chromedp.Poll[bool](`document.querySelector('`+row+` .key-status')?.textContent === "revoked"`,
		chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Fatalf("key never shown revoked: %v", err)
	}
	if code := sessionsWithKey(t, s, secret); code != http.StatusForbidden {
		t.Fatalf("revoked key on GET /sessions: %d", code)
	}

	do("sign out",
		chromedp.Click(chromedp.CSS("#signout")),
		chromedp.WaitVisible(chromedp.CSS("#signed-out")),
		chromedp.Reload(),
		chromedp.WaitVisible(chromedp.CSS("#signed-out")),
	)
	if n := count(t, s, `SELECT count(*) FROM dashboard_sessions`); n != 0 {
		t.Fatalf("%d sessions after signing out", n)
	}
}

func sessionsWithKey(t *testing.T, s *testServer, key string) int {
	req, _ := http.NewRequest("GET", s.url+"/sessions", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
