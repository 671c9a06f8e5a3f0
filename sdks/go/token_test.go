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

	// With stall set, token requests wait until it is closed; each one
	// first sends on asked.
	stall chan struct{}
	asked chan struct{}
}

// stallTokens makes the control plane hold token requests until the
// returned function is called (more than once is fine).
func (s *tokenStubs) stallTokens() (release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stall, s.asked = make(chan struct{}), make(chan struct{}, 64)
	var once sync.Once
	stall := s.stall
	release = func() { once.Do(func() { close(stall) }) }
	s.t.Cleanup(release)
	return release
}

// waitAsked waits until the control plane has received a token request.
func (s *tokenStubs) waitAsked() {
	s.t.Helper()
	select {
	case <-s.asked:
	case <-time.After(5 * time.Second):
		s.t.Fatal("no token request reached the control plane")
	}
}

// count says how often what occurs in the calls the control plane and the
// worker saw.
func (s *tokenStubs) count(what string) (controlPlane, worker int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Count(fmt.Sprint(s.cpCalls), what), strings.Count(fmt.Sprint(s.workerLog), what)
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
		s.mu.Lock()
		stall, asked := s.stall, s.asked
		s.mu.Unlock()
		if stall != nil {
			asked <- struct{}{}
			select {
			case <-stall:
			case <-r.Context().Done():
				return
			}
		}
		writeJSON(w, 200, s.issue())
	case "DELETE /sandboxes/sb1":
		w.WriteHeader(204)
	case "DELETE /sandboxes/gone":
		writeJSON(w, 404, errorBody{"sandbox gone not found", CodeSandboxNotFound})
	case "DELETE /sandboxes/broken":
		writeJSON(w, 500, errorBody{"database down", "internal"})
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
	if killed, err := sbx.Kill(ctx); err != nil || !killed {
		t.Fatalf("kill: %v, %v", killed, err)
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

// The control plane stalls on a token renewal: the caller renewing waits,
// and the other calls go on with the current token, which has not expired.
func TestSlowTokenRenewalDoesNotBlockOtherCalls(t *testing.T) {
	stubs, sbx, release := stalledSandbox(t, 10*time.Minute)
	ctx := context.Background()
	stubs.clock.advance(9*time.Minute + 30*time.Second) // inside the renewal margin, still valid
	renewer := goRun(ctx, sbx, "renewer")
	stubs.waitAsked()

	others := make(chan error, 1)
	go func() {
		for i := 0; i < 3; i++ {
			if _, err := sbx.Commands().Run(ctx, "other", RunOptions{}); err != nil {
				others <- err
				return
			}
		}
		_, err := sbx.Info(ctx)
		others <- err
	}()
	select {
	case err := <-others:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		release()
		t.Fatal("calls blocked behind the stalled token renewal")
	}
	release()
	if err := await(t, renewer, "the renewing call"); err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(stubs.workerTokens()), "[token-1 token-1 token-1 token-2]"; got != want {
		t.Fatalf("worker saw %s, want %s", got, want)
	}
	if _, err := sbx.Commands().Run(ctx, "after", RunOptions{}); err != nil {
		t.Fatal(err)
	}
	if n, _ := stubs.count("POST /sandboxes/sb1/token"); n != 1 {
		t.Fatalf("%d token requests, want 1", n)
	}
}

// Calls refused with token_expired at the same time renew the token once.
func TestConcurrentExpiredAnswersRenewOnce(t *testing.T) {
	stubs, sbx, release := stalledSandbox(t, time.Hour)
	ctx := context.Background()
	stubs.revokeAll()
	const n = 5
	var calls []<-chan error
	for range n {
		calls = append(calls, goRun(ctx, sbx, "true"))
	}
	stubs.waitAsked()
	// Release once every call has had its token_expired answer.
	deadline := time.Now().Add(5 * time.Second)
	for _, w := stubs.count("token-1"); w < n; _, w = stubs.count("token-1") {
		if time.Now().After(deadline) {
			release()
			t.Fatalf("the calls did not all reach the worker")
		}
		time.Sleep(5 * time.Millisecond)
	}
	release()
	for _, c := range calls {
		if err := await(t, c, "a refused call"); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := stubs.count("POST /sandboxes/sb1/token"); got != 1 {
		t.Fatalf("%d token requests for %d expired answers, want 1: %v", got, n, stubs.cpCalls)
	}
	if _, got := stubs.count("token-2"); got != n {
		t.Fatalf("%d retries with token-2, want %d: %v", got, n, stubs.workerLog)
	}
}

// A caller that gives up while renewing the token does not fail the others
// waiting for that renewal: one of them asks again.
func TestRenewalOutlivesTheCallerThatGaveUp(t *testing.T) {
	stubs, sbx, release := stalledSandbox(t, 10*time.Minute)
	ctx := context.Background()
	stubs.clock.advance(11 * time.Minute) // expired: every call needs the new token
	quitting, quit := context.WithCancel(ctx)
	first := goRun(quitting, sbx, "first")
	stubs.waitAsked()
	second := goRun(ctx, sbx, "second")
	quit()
	if err := await(t, first, "the caller that gave up"); !errors.Is(err, context.Canceled) {
		t.Fatalf("the caller that gave up: %v, want context.Canceled", err)
	}
	release()
	if err := await(t, second, "the caller still waiting"); err != nil {
		t.Fatalf("the caller still waiting: %v", err)
	}
}

// stalledSandbox creates a sandbox through new stubs whose control plane
// then holds token requests until release is called.
func stalledSandbox(t *testing.T, lifetime time.Duration) (stubs *tokenStubs, sbx *Sandbox, release func()) {
	t.Helper()
	stubs = newTokenStubs(t, lifetime)
	sbx, err := stubs.client().Create(context.Background(), CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return stubs, sbx, stubs.stallTokens()
}

// goRun runs cmd in the background; its error arrives on the channel.
func goRun(ctx context.Context, sbx *Sandbox, cmd string) <-chan error {
	c := make(chan error, 1)
	go func() {
		_, err := sbx.Commands().Run(ctx, cmd, RunOptions{})
		c <- err
	}()
	return c
}

// await returns what c carries, failing the test after five seconds.
func await(t *testing.T, c <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-c:
		return err
	case <-time.After(5 * time.Second):
		t.Fatalf("%s did not finish", what)
		return nil
	}
}
