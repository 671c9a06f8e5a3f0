package opensandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// The control plane that hands out connectURL and sandbox tokens is built in
// parallel with this SDK; these tests run the SDK's routing and token renewal
// against stubs of it and of a worker, named as such.

const stubKey = "stub-api-key"

// fakeClock is the SDK's clock in these tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *fakeClock) advance(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

// tokenStubs is a control-plane stub (lifecycle, token issuing) and a worker
// stub (data path behind tokens).
type tokenStubs struct {
	t            *testing.T
	clock        *fakeClock
	lifetime     time.Duration
	controlPlane *httptest.Server
	worker       *httptest.Server

	mu        sync.Mutex
	issued    int
	valid     map[string]bool // tokens the worker accepts
	cpCalls   []string        // "METHOD path" seen by the control plane
	workerLog []string        // "METHOD path token" seen by the worker
}

func newTokenStubs(t *testing.T, lifetime time.Duration) *tokenStubs {
	s := &tokenStubs{t: t, clock: &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)},
		lifetime: lifetime, valid: map[string]bool{}}
	s.worker = httptest.NewServer(http.HandlerFunc(s.serveWorker))
	s.controlPlane = httptest.NewServer(http.HandlerFunc(s.serveControlPlane))
	t.Cleanup(s.worker.Close)
	t.Cleanup(s.controlPlane.Close)
	return s
}

func (s *tokenStubs) client() *Client {
	c := NewClient(WithAPIURL(s.controlPlane.URL), WithAPIKey(stubKey))
	c.now = s.clock.now
	return c
}

// issue makes a new token valid until now+lifetime.
func (s *tokenStubs) issue() tokenAnswer {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.issued++
	tok := fmt.Sprintf("token-%d", s.issued)
	s.valid[tok] = true
	exp := s.clock.now().Add(s.lifetime)
	return tokenAnswer{Token: tok, TokenExpiresAt: &exp, ConnectURL: s.worker.URL}
}

func (s *tokenStubs) revokeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.valid)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *tokenStubs) serveControlPlane(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.cpCalls = append(s.cpCalls, r.Method+" "+r.URL.Path)
	s.mu.Unlock()
	if r.Header.Get("X-API-Key") != stubKey {
		writeJSON(w, 401, errorBody{"missing credentials", CodeUnauthenticated})
		return
	}
	info := SandboxInfo{SandboxID: "sb1", TemplateID: "busybox", Status: StatusRunning, ConnectURL: s.worker.URL}
	switch r.Method + " " + r.URL.Path {
	case "POST /sandboxes":
		t := s.issue()
		info.Token, info.TokenExpiresAt = t.Token, t.TokenExpiresAt
		writeJSON(w, 201, info)
	case "GET /sandboxes/sb1":
		writeJSON(w, 200, info) // the get answer carries no token
	case "POST /sandboxes/sb1/token":
		writeJSON(w, 200, s.issue())
	case "DELETE /sandboxes/sb1":
		w.WriteHeader(204)
	default:
		writeJSON(w, 404, errorBody{"no route", "not_found"})
	}
}

func (s *tokenStubs) serveWorker(w http.ResponseWriter, r *http.Request) {
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	s.workerLog = append(s.workerLog, r.Method+" "+r.URL.Path+" "+tok)
	ok := s.valid[tok]
	s.mu.Unlock()
	if r.Header.Get("X-API-Key") != "" {
		writeJSON(w, 400, errorBody{"the worker takes no API key", CodeInvalidArgument})
		return
	}
	if !ok {
		writeJSON(w, 401, errorBody{"token expired", CodeTokenExpired})
		return
	}
	switch r.Method + " " + r.URL.Path {
	case "POST /sandboxes/sb1/commands":
		var p processConfig
		_ = json.NewDecoder(r.Body).Decode(&p)
		writeJSON(w, 200, CommandResult{ExitCode: 0, Stdout: "ran " + p.Cmd})
	case "PUT /sandboxes/sb1/files":
		n, _ := io.Copy(io.Discard, r.Body)
		writeJSON(w, 200, EntryInfo{Path: r.URL.Query().Get("path"), Size: n})
	case "GET /sandboxes/sb1/pty/p1":
		s.servePTY(w, r, tok)
	default:
		writeJSON(w, 404, errorBody{"no route", "not_found"})
	}
}

// servePTY checks that the WebSocket offered its token as a subprotocol,
// echoes one typed frame and ends with exit code 7.
func (s *tokenStubs) servePTY(w http.ResponseWriter, r *http.Request, tok string) {
	if !strings.Contains(r.Header.Get("Sec-WebSocket-Protocol"), "bearer."+tok) {
		writeJSON(w, 401, errorBody{"no bearer subprotocol", CodeUnauthenticated})
		return
	}
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"bearer." + tok}})
	if err != nil {
		s.t.Errorf("accept: %v", err)
		return
	}
	defer c.CloseNow()
	ctx := r.Context()
	_, typed, err := c.Read(ctx)
	if err != nil {
		return
	}
	_ = c.Write(ctx, websocket.MessageBinary, append([]byte("echo:"), typed...))
	_ = c.Write(ctx, websocket.MessageText, []byte(`{"type":"exit","exitCode":7}`))
	_ = c.Close(websocket.StatusNormalClosure, "")
}

func (s *tokenStubs) workerTokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, l := range s.workerLog {
		out = append(out, l[strings.LastIndex(l, " ")+1:])
	}
	return out
}

func TestDataPathGoesToConnectURLWithToken(t *testing.T) {
	stubs := newTokenStubs(t, time.Hour)
	ctx := context.Background()
	sbx, err := stubs.client().Create(ctx, CreateOptions{Template: "busybox"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := sbx.Commands().Run(ctx, "true", RunOptions{})
	if err != nil || res.Stdout != "ran true" {
		t.Fatalf("run: %+v, %v", res, err)
	}
	if err := sbx.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	if got := stubs.workerTokens(); len(got) != 1 || got[0] != "token-1" {
		t.Fatalf("worker saw tokens %v, want [token-1]", got)
	}
	want := []string{"POST /sandboxes", "DELETE /sandboxes/sb1"}
	if fmt.Sprint(stubs.cpCalls) != fmt.Sprint(want) {
		t.Fatalf("control plane saw %v, want %v", stubs.cpCalls, want)
	}
}

func TestTokenRefreshedBeforeExpiry(t *testing.T) {
	stubs := newTokenStubs(t, 10*time.Minute)
	ctx := context.Background()
	sbx, err := stubs.client().Create(ctx, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	run := func() {
		t.Helper()
		if _, err := sbx.Commands().Run(ctx, "true", RunOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	run()
	stubs.clock.advance(8 * time.Minute) // 2 minutes left: more than the 1 minute margin
	run()
	stubs.clock.advance(90 * time.Second) // 30 s left: renew first
	run()
	run()
	if got, want := fmt.Sprint(stubs.workerTokens()), "[token-1 token-1 token-2 token-2]"; got != want {
		t.Fatalf("worker saw %s, want %s", got, want)
	}
	if n := strings.Count(fmt.Sprint(stubs.cpCalls), "POST /sandboxes/sb1/token"); n != 1 {
		t.Fatalf("%d token renewals, want 1: %v", n, stubs.cpCalls)
	}
}

func TestShortTokenRenewedAtAQuarterOfItsLife(t *testing.T) {
	stubs := newTokenStubs(t, 20*time.Second) // margin: 5 s, not the default minute
	ctx := context.Background()
	sbx, err := stubs.client().Create(ctx, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stubs.clock.advance(10 * time.Second)
	if _, err := sbx.Commands().Run(ctx, "true", RunOptions{}); err != nil {
		t.Fatal(err)
	}
	stubs.clock.advance(6 * time.Second)
	if _, err := sbx.Commands().Run(ctx, "true", RunOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(stubs.workerTokens()), "[token-1 token-2]"; got != want {
		t.Fatalf("worker saw %s, want %s", got, want)
	}
}

func TestTokenExpiredAnswerRenewsAndRetries(t *testing.T) {
	stubs := newTokenStubs(t, time.Hour)
	ctx := context.Background()
	sbx, err := stubs.client().Create(ctx, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stubs.revokeAll() // the worker now refuses token-1 as expired
	if _, err := sbx.Commands().Run(ctx, "true", RunOptions{}); err != nil {
		t.Fatalf("run after revocation: %v", err)
	}
	if got, want := fmt.Sprint(stubs.workerTokens()), "[token-1 token-2]"; got != want {
		t.Fatalf("worker saw %s, want %s", got, want)
	}
	// A streamed upload cannot be sent twice: the error comes back.
	stubs.revokeAll()
	_, err = sbx.Files().Write(ctx, "/tmp/x", io.MultiReader(strings.NewReader("abc")))
	if !errors.Is(err, ErrAuthentication) {
		t.Fatalf("streamed write with an expired token: %v, want ErrAuthentication", err)
	}
	// The next call uses a fresh token.
	e, err := sbx.Files().Write(ctx, "/tmp/x", strings.NewReader("abcd"))
	if err != nil || e.Size != 4 {
		t.Fatalf("write: %+v, %v", e, err)
	}
}

func TestConnectFetchesAToken(t *testing.T) {
	stubs := newTokenStubs(t, time.Hour)
	ctx := context.Background()
	sbx, err := stubs.client().Connect(ctx, "sb1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sbx.Commands().Run(ctx, "true", RunOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(stubs.cpCalls); got != "[GET /sandboxes/sb1 POST /sandboxes/sb1/token]" {
		t.Fatalf("control plane saw %s", got)
	}
	if got := fmt.Sprint(stubs.workerTokens()); got != "[token-1]" {
		t.Fatalf("worker saw %s", got)
	}
}

func TestPTYWebSocketCarriesToken(t *testing.T) {
	stubs := newTokenStubs(t, time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sbx, err := stubs.client().Create(ctx, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	h, err := sbx.PTY().Connect(ctx, "p1", func(b []byte) { got <- string(b) })
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Send(ctx, []byte("ls\r")); err != nil {
		t.Fatal(err)
	}
	if out := <-got; out != "echo:ls\r" {
		t.Fatalf("terminal output %q", out)
	}
	code, err := h.Wait(ctx)
	if err != nil || code != 7 {
		t.Fatalf("wait: %d, %v; want 7", code, err)
	}
}

func TestCombinedModeUsesAPIKeyOnDataPath(t *testing.T) {
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.Method+" "+r.URL.Path+" key="+r.Header.Get("X-API-Key")+" auth="+r.Header.Get("Authorization"))
		switch r.URL.Path {
		case "/sandboxes":
			writeJSON(w, 201, SandboxInfo{SandboxID: "sb1", Status: StatusRunning})
		default:
			writeJSON(w, 200, CommandResult{Stdout: "ok"})
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	sbx, err := NewClient(WithAPIURL(srv.URL+"/"), WithAPIKey("k")).Create(ctx, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sbx.Commands().Run(ctx, "true", RunOptions{}); err != nil {
		t.Fatal(err)
	}
	want := "[POST /sandboxes key=k auth= POST /sandboxes/sb1/commands key=k auth=]"
	if fmt.Sprint(seen) != want {
		t.Fatalf("server saw %v, want %s", seen, want)
	}
}

func TestRateLimitAnswer(t *testing.T) {
	// The combined server has no quotas; the control plane answers 429.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 429, errorBody{"concurrent sandbox limit reached", CodeQuotaExceeded})
	}))
	defer srv.Close()
	_, err := NewClient(WithAPIURL(srv.URL)).Create(context.Background(), CreateOptions{})
	var e *Error
	if !errors.Is(err, ErrRateLimit) || !errors.As(err, &e) || e.Status != 429 || e.Message != "concurrent sandbox limit reached" {
		t.Fatalf("create over quota: %#v", err)
	}
}
