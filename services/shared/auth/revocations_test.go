package auth

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/opensandbox/opensandbox/services/shared/errs"
)

// eventually polls cond until it holds or within passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func ended(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return true
	default:
		return false
	}
}

// Before its first list a worker refuses keyed tokens (it cannot know what
// was revoked); a list makes it trust the others, refuse the revoked ones,
// and forget a key once its tokens can no longer be valid.
func TestRevocationsCheck(t *testing.T) {
	r := NewRevocations(nil)
	now := time.Now()
	r.now = func() time.Time { return now }
	if err := r.Check("k1"); !errors.Is(err, ErrRevocationsStale) {
		t.Fatalf("before any list: %v, want %v", err, ErrRevocationsStale)
	}
	if err := r.Check(""); err != nil {
		t.Fatalf("a static-key token (no key id) before any list: %v", err)
	}
	r.Apply(RevocationList{Keys: []RevokedKey{{ID: "k1", RememberSec: 60}}, ValidForMs: 30_000})
	if err := r.Check("k1"); !errors.Is(err, ErrTokenRevoked) {
		t.Fatalf("revoked key: %v", err)
	}
	if err := r.Check("k2"); err != nil {
		t.Fatalf("live key: %v", err)
	}
	if ErrTokenRevoked.Kind.HTTPStatus() != 403 || ErrRevocationsStale.Kind.HTTPStatus() != 503 {
		t.Fatal("revoked must answer 403, stale 503")
	}
	// A list without k1 (another control plane's, or later) does not
	// un-revoke it: lists only add.
	now = now.Add(20 * time.Second)
	r.Apply(RevocationList{ValidForMs: 30_000})
	if err := r.Check("k1"); !errors.Is(err, ErrTokenRevoked) {
		t.Fatalf("revoked key after a list without it: %v", err)
	}
	// The view goes stale without lists.
	now = now.Add(31 * time.Second)
	if err := r.Check("k2"); !errors.Is(err, ErrRevocationsStale) {
		t.Fatalf("31 s after the last list: %v", err)
	}
	// Past its remember time, k1 is forgotten at the next list.
	now = now.Add(10 * time.Second)
	r.Apply(RevocationList{ValidForMs: 30_000})
	if r.Revoked() != 0 || r.Check("k1") != nil {
		t.Fatal("k1 still known after its last token expired")
	}
}

// Revoking a key ends the connections its tokens opened, and only those;
// a stale view ends every keyed connection.
func TestRevocationsEndConnections(t *testing.T) {
	var stale atomic.Int32
	r := NewRevocations(func() { stale.Add(1) })
	r.Apply(RevocationList{ValidForMs: 60_000})
	c1 := r.Bind(context.Background(), "k1")
	c2 := r.Bind(context.Background(), "k2")
	static := r.Bind(context.Background(), "")
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	c1b := r.Bind(parent, "k1") // a cancellable parent takes the other path
	child, cancelChild := context.WithCancel(c1)
	defer cancelChild()
	if ended(c1) || ended(c2) || ended(c1b) || ended(child) {
		t.Fatal("contexts ended before any revocation")
	}
	r.Apply(RevocationList{Keys: []RevokedKey{{ID: "k1", RememberSec: 60}}, ValidForMs: 60_000})
	eventually(t, 5*time.Second, "k1's connections to end", func() bool { return ended(c1) && ended(c1b) && ended(child) })
	if !errors.Is(c1.Err(), context.Canceled) || !errors.Is(context.Cause(c1b), ErrTokenRevoked) {
		t.Fatalf("errors of revoked contexts: %v, cause %v", c1.Err(), context.Cause(c1b))
	}
	if ended(c2) || static.Done() != nil {
		t.Fatal("a revocation of k1 ended another key's connection")
	}
	// Lists stop coming: the view goes stale at its validity and ends k2.
	r.Apply(RevocationList{ValidForMs: 50})
	eventually(t, 5*time.Second, "the stale view to end k2's connections", func() bool { return ended(c2) && stale.Load() == 1 })
	if err := r.Check("k2"); !errors.Is(err, ErrRevocationsStale) {
		t.Fatalf("stale view: %v", err)
	}
	// A new list makes it fresh again, and new connections live.
	r.Apply(RevocationList{ValidForMs: 60_000})
	if c := r.Bind(context.Background(), "k2"); ended(c) || r.Check("k2") != nil {
		t.Fatal("a fresh view still refuses k2")
	}
}

// The worker's middleware with scopes and revocations: a read token reads
// but cannot reach a route that needs the full scope; a revoked key's token
// and (while the view is stale) any keyed token are refused; a static-key
// token (no key id) does not depend on the view.
func TestSandboxJWTScopeAndRevocation(t *testing.T) {
	tokens, _ := NewSandboxTokens("0123456789abcdef-secret")
	rev := NewRevocations(nil)
	var failures []string
	app := fiber.New(fiber.Config{ErrorHandler: func(c *fiber.Ctx, err error) error {
		e := errs.As(err)
		return c.Status(e.Kind.HTTPStatus()).SendString(e.Code)
	}})
	app.Use(SandboxJWT(tokens, "w1", rev, func(r string) { failures = append(failures, r) }))
	app.Get("/sandboxes/:id/files", func(c *fiber.Ctx) error { return c.SendString("read") })
	app.Post("/sandboxes/:id/commands", RequireFull, func(c *fiber.Ctx) error { return c.SendString("ran") })
	issue := func(scope, key string) string {
		tok, _, err := tokens.Issue(Grant{OrgID: "o", SandboxID: "sb", WorkerID: "w1", Scope: scope, KeyID: key, Expires: time.Now().Add(time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	read, full, static, revoked := issue(ScopeRead, "kr"), issue(ScopeFull, "kf"), issue(ScopeFull, ""), issue(ScopeFull, "kx")
	do := func(method, path, tok string) (int, string) {
		req := httptest.NewRequest(method, path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := app.Test(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	check := func(name, method, path, tok string, status int, body string) {
		t.Helper()
		if s, b := do(method, path, tok); s != status || b != body {
			t.Errorf("%s: %d %q, want %d %q", name, s, b, status, body)
		}
	}
	check("keyed token before any list", "GET", "/sandboxes/sb/files", full, 503, "revocations_unavailable")
	check("static token before any list", "POST", "/sandboxes/sb/commands", static, 200, "ran")
	rev.Apply(RevocationList{Keys: []RevokedKey{{ID: "kx", RememberSec: 60}}, ValidForMs: 60_000})
	check("read token reads", "GET", "/sandboxes/sb/files", read, 200, "read")
	check("read token runs", "POST", "/sandboxes/sb/commands", read, 403, "insufficient_scope")
	check("full token runs", "POST", "/sandboxes/sb/commands", full, 200, "ran")
	check("revoked key", "GET", "/sandboxes/sb/files", revoked, 403, "token_revoked")
	want := "revocations_unavailable,insufficient_scope,token_revoked"
	if got := strings.Join(failures, ","); got != want {
		t.Errorf("failures observed %q, want %q", got, want)
	}
}
