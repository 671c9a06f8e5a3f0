package server

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/cluster"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/keyauth"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/store"
	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/shared/auth"
	"github.com/opensandbox/opensandbox/services/worker/sandboxtest"
)

// dataCall is one data-path request.
type dataCall struct {
	method, path, body string
}

// writeCalls are data-path requests that change a sandbox, run something in
// it, or hold a stream open: what read-only credentials must not do. pid
// is a running process and session a terminal of sandbox id.
func writeCalls(id, pid, session string) []dataCall {
	p := "/sandboxes/" + id
	return []dataCall{
		{"POST", p + "/commands", `{"cmd":"id -u"}`},
		{"POST", p + "/commands", `{"cmd":"id -u","stream":true}`},
		{"POST", p + "/commands", `{"cmd":"sleep 1","background":true}`},
		{"PUT", p + "/files?path=/tmp/evil", "x"},
		{"DELETE", p + "/files?path=/tmp/hello", ""},
		{"POST", p + "/files/mkdir?path=/tmp/d", ""},
		{"POST", p + "/files/rename", `{"from":"/tmp/hello","to":"/tmp/moved"}`},
		{"GET", p + "/files/watch?path=/tmp", ""},
		{"GET", p + "/processes/" + pid + "/stream", ""},
		{"POST", p + "/processes/" + pid + "/stdin", "input"},
		{"DELETE", p + "/processes/" + pid + "/stdin", ""},
		{"POST", p + "/processes/" + pid + "/signal", `{"signal":"SIGTERM"}`},
		{"DELETE", p + "/processes/" + pid, ""},
		{"POST", p + "/pty", `{"cols":80,"rows":24}`},
		{"POST", p + "/pty/" + session + "/resize", `{"cols":100,"rows":30}`},
		{"DELETE", p + "/pty/" + session, ""},
	}
}

// readCalls are the reads read-only credentials may make.
func readCalls(id string) []dataCall {
	p := "/sandboxes/" + id
	return []dataCall{
		{"GET", p, ""},
		{"GET", p + "/files?path=/tmp/hello", ""},
		{"GET", p + "/files/list?path=/tmp", ""},
		{"GET", p + "/files/stat?path=/tmp/hello", ""},
		{"GET", p + "/processes", ""},
	}
}

// prepareBox writes /tmp/hello, starts a long process and a terminal in
// sandbox id through s (full credentials, hdr carrying them) and returns the
// process's pid and the terminal's session id.
func prepareBox(t *testing.T, s *stack, id string, hdr ...string) (pid, session string) {
	t.Helper()
	resp, body := s.do(t, "PUT", "/sandboxes/"+id+"/files?path=/tmp/hello", strings.NewReader("hello"), hdr...)
	if resp.StatusCode != 200 {
		t.Fatalf("write: %d %s", resp.StatusCode, body)
	}
	var started api.ProcessStarted
	resp, body = s.do(t, "POST", "/sandboxes/"+id+"/commands", strings.NewReader(`{"cmd":"sleep 600","background":true}`), hdr...)
	if resp.StatusCode != 200 {
		t.Fatalf("background process: %d %s", resp.StatusCode, body)
	}
	decode(t, body, &started)
	var sess api.PTYSession
	resp, body = s.do(t, "POST", "/sandboxes/"+id+"/pty", strings.NewReader(`{"cols":80,"rows":24}`), hdr...)
	if resp.StatusCode != 201 {
		t.Fatalf("create pty: %d %s", resp.StatusCode, body)
	}
	decode(t, body, &sess)
	return strconv.Itoa(started.PID), sess.SessionID
}

// checkReadOnly proves that read-only credentials (hdr, or the token in
// the WebSocket subprotocol) read sandbox id but can do nothing else: every
// write call answers 403 insufficient_scope, the terminal's WebSocket is
// refused before the upgrade, and nothing changed in the sandbox.
func checkReadOnly(t *testing.T, s *stack, id, pid, session, wsProtocol string, hdr ...string) {
	t.Helper()
	for _, c := range readCalls(id) {
		resp, body := s.do(t, c.method, c.path, strings.NewReader(c.body), hdr...)
		if resp.StatusCode != 200 {
			t.Errorf("read-only %s %s: %d %s, want 200", c.method, c.path, resp.StatusCode, body)
		}
	}
	for _, c := range writeCalls(id, pid, session) {
		// Bounded: a stream that was wrongly let through must fail the
		// test, not hang it.
		req, _ := http.NewRequest(c.method, s.url+c.path, strings.NewReader(c.body))
		req.Header.Set("Content-Type", "application/json")
		if s.key != "" {
			req.Header.Set("X-API-Key", s.key)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Errorf("read-only %s %s: %v, want 403 insufficient_scope", c.method, c.path, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 403 || !strings.Contains(string(body), `"insufficient_scope"`) {
			t.Errorf("read-only %s %s: %d %s, want 403 insufficient_scope", c.method, c.path, resp.StatusCode, body)
		}
	}
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, Subprotocols: []string{wsProtocol}}
	ws, resp, err := d.Dial("ws"+strings.TrimPrefix(s.url, "http")+"/sandboxes/"+id+"/pty/"+session, nil)
	if err == nil {
		ws.Close()
		t.Error("read-only credentials opened the terminal's WebSocket")
	} else if resp == nil || resp.StatusCode != 403 {
		t.Errorf("read-only terminal WebSocket: %v %v, want 403", err, resp)
	}
	// Nothing happened: the file is there, unchanged, nothing was made.
	resp, body := s.do(t, "GET", "/sandboxes/"+id+"/files?path=/tmp/hello", nil, hdr...)
	if resp.StatusCode != 200 || string(body) != "hello" {
		t.Errorf("/tmp/hello after the refused writes: %d %q", resp.StatusCode, body)
	}
	for _, p := range []string{"/tmp/evil", "/tmp/d", "/tmp/moved"} {
		if resp, _ := s.do(t, "GET", "/sandboxes/"+id+"/files/stat?path="+p, nil, hdr...); resp.StatusCode != 404 {
			t.Errorf("%s exists after refused writes (%d)", p, resp.StatusCode)
		}
	}
}

// In server mode, with the real worker binary and PostgreSQL: a
// sandboxes:read key gets a read-only token that reads but cannot run,
// write, stream, watch or open a terminal (403 insufficient_scope); a
// revoked key's token stops working, and the terminal it had open closes,
// within 30 s (here within a few seconds: the list goes out every 500 ms);
// a token of a deleted sandbox is refused.
func TestServerModeScopedRevocableTokens(t *testing.T) {
	c := startCluster(t, func(cfg *Config) { cfg.RevocationInterval = 500 * time.Millisecond })
	bin := workerBinary(t)
	id := "tok-" + sandboxtest.RandomID()
	dataDir := killedWorkerDir(t, id)
	startWorkerProcess(t, c, bin, id, dataDir, freePort(t), freePort(t))
	c.waitWorker(t, id, true)

	var sb api.Sandbox
	c.cp.json(t, "POST", "/sandboxes", api.SandboxConfig{TemplateID: "busybox"}, 201, &sb)
	w := direct(sb)
	pid, session := prepareBox(t, w, sb.SandboxID, bearer(sb.Token)...)

	// The read-only key: its token says so, and the refresh route (a POST)
	// hands it another read-only token.
	reader := &stack{url: c.cp.url, key: newKey(t, c.st, c.org, func(k *store.APIKey) { k.Scopes = []string{keyauth.ScopeRead} })}
	var seen api.Sandbox
	reader.json(t, "GET", "/sandboxes/"+sb.SandboxID, nil, 200, &seen)
	var renewed cluster.TokenResponse
	reader.json(t, "POST", "/sandboxes/"+sb.SandboxID+"/token", nil, 200, &renewed)
	tokens, _ := auth.NewSandboxTokens(testJWTSecret)
	for _, tok := range []string{seen.Token, renewed.Token} {
		claims, err := tokens.Verify(tok)
		if err != nil || claims.Scope != auth.ScopeRead || claims.KeyID == "" {
			t.Fatalf("read key's token: %+v %v", claims, err)
		}
	}
	if full, _ := tokens.Verify(sb.Token); full.Scope != auth.ScopeFull {
		t.Fatalf("write key's token has scope %q", full.Scope)
	}
	checkReadOnly(t, w, sb.SandboxID, pid, session, "bearer."+seen.Token, bearer(seen.Token)...)
	// The write key's token can (the control: the refusals above are the
	// scope's, not a broken sandbox).
	resp, body := w.do(t, "POST", "/sandboxes/"+sb.SandboxID+"/commands", strings.NewReader(`{"cmd":"id -u"}`), bearer(sb.Token)...)
	if resp.StatusCode != 200 {
		t.Fatalf("write token: %d %s", resp.StatusCode, body)
	}

	// Revocation: a key's token works and holds a terminal open; the key is
	// revoked (as `admin revoke-key` does); its token and the terminal stop.
	victim := &stack{url: c.cp.url, key: newKey(t, c.st, c.org, nil)}
	var vsb api.Sandbox
	victim.json(t, "GET", "/sandboxes/"+sb.SandboxID, nil, 200, &vsb)
	exec := func(tok string) (int, string) {
		resp, body := w.do(t, "POST", "/sandboxes/"+sb.SandboxID+"/commands", strings.NewReader(`{"cmd":"echo ok"}`), bearer(tok)...)
		return resp.StatusCode, string(body)
	}
	if st, body := exec(vsb.Token); st != 200 {
		t.Fatalf("victim's token before the revocation: %d %s", st, body)
	}
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, Subprotocols: []string{"bearer." + vsb.Token}}
	ws, resp, err := d.Dial("ws"+strings.TrimPrefix(w.url, "http")+"/sandboxes/"+sb.SandboxID+"/pty/"+session, nil)
	if err != nil {
		t.Fatalf("victim's terminal: %v %v", err, resp)
	}
	defer ws.Close()
	if _, err := c.st.RevokeKey(context.Background(), store.VisiblePrefix(victim.key)); err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	wsClosed := make(chan time.Duration, 1)
	go func() {
		ws.SetReadDeadline(time.Now().Add(60 * time.Second))
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				wsClosed <- time.Since(revoked)
				return
			}
		}
	}()
	pollUntil(t, 30*time.Second, "the revoked key's token to be refused", func() bool {
		st, body := exec(vsb.Token)
		if st != 200 && (st != 403 || !strings.Contains(body, `"token_revoked"`)) {
			t.Fatalf("revoked key's token: %d %s, want 200 until refused with 403 token_revoked", st, body)
		}
		return st == 403
	})
	t.Logf("revoked key's token refused %s after the revocation", time.Since(revoked).Round(10*time.Millisecond))
	select {
	case after := <-wsClosed:
		t.Logf("its terminal closed %s after the revocation", after.Round(10*time.Millisecond))
	case <-time.After(30*time.Second - time.Since(revoked)):
		t.Fatal("the revoked key's terminal is still open 30 s after the revocation")
	}
	if st, body := exec(sb.Token); st != 200 {
		t.Fatalf("another key's token after the revocation: %d %s", st, body)
	}
	if n := workerCounter(t, w.url, `opensandbox_auth_failures_total{reason="token_revoked",surface="http"}`); n < 1 {
		t.Fatalf("token_revoked refusals counted %v", n)
	}
	if n := workerCounter(t, w.url, `opensandbox_auth_failures_total{reason="insufficient_scope",surface="http"}`); n < float64(len(writeCalls("", "", ""))) {
		t.Fatalf("insufficient_scope refusals counted %v", n)
	}

	// A token of a deleted sandbox opens nothing, nor another sandbox.
	var other api.Sandbox
	c.cp.json(t, "POST", "/sandboxes", api.SandboxConfig{TemplateID: "busybox"}, 201, &other)
	resp, body = w.do(t, "POST", "/sandboxes/"+other.SandboxID+"/commands", strings.NewReader(`{"cmd":"true"}`), bearer(sb.Token)...)
	wantError(t, resp, body, 403, "forbidden")
	c.cp.json(t, "DELETE", "/sandboxes/"+sb.SandboxID, nil, 204, nil)
	if st, body := exec(sb.Token); st != 404 || !strings.Contains(body, "sandbox_not_found") {
		t.Fatalf("token of a deleted sandbox: %d %s", st, body)
	}
}

// workerCounter reads one series of a worker's /metrics (with the cluster
// secret); 0 when absent.
func workerCounter(t *testing.T, url, series string) float64 {
	t.Helper()
	req, _ := http.NewRequest("GET", url+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+testWorkerSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", line, err)
			}
			return f
		}
	}
	return 0
}

// In combined mode with PostgreSQL, API keys reach the data path directly:
// a sandboxes:read key reads but cannot run, write, stream, watch or open a
// terminal (403 insufficient_scope); a revoked key is refused at once, and
// the watch and terminal it had open close within 30 s.
func TestCombinedReadKeyAndRevokedKey(t *testing.T) {
	admin, st := startCombinedPG(t)
	org, key := newOrg(t, st, "acme", 5, 600)
	writer := &stack{url: admin.url, key: key}
	id := createBox(t, writer, "busybox")
	pid, session := prepareBox(t, writer, id)

	readKey := newKey(t, st, org, func(k *store.APIKey) { k.Scopes = []string{keyauth.ScopeRead} })
	reader := &stack{url: admin.url, key: readKey}
	checkReadOnly(t, reader, id, pid, session, "bearer."+readKey)
	writer.json(t, "POST", "/sandboxes/"+id+"/commands", api.ProcessConfig{Cmd: "true"}, 200, nil)

	victimKey := newKey(t, st, org, nil)
	victim := &stack{url: admin.url, key: victimKey}
	watch := openSSE(t, victim, "GET", "/sandboxes/"+id+"/files/watch?path=/tmp", "")
	if ev, ok := watch.next(t); !ok || ev.name != "ready" {
		t.Fatalf("watch: %+v %v", ev, ok)
	}
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, Subprotocols: []string{"bearer." + victimKey}}
	ws, resp, err := d.Dial("ws"+strings.TrimPrefix(admin.url, "http")+"/sandboxes/"+id+"/pty/"+session, nil)
	if err != nil {
		t.Fatalf("victim's terminal: %v %v", err, resp)
	}
	defer ws.Close()
	if _, err := st.RevokeKey(context.Background(), store.VisiblePrefix(victimKey)); err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	resp, body := victim.do(t, "POST", "/sandboxes/"+id+"/commands", strings.NewReader(`{"cmd":"true"}`))
	wantError(t, resp, body, 403, "forbidden")
	ended := make(chan string, 2)
	go func() {
		for {
			if _, ok := watch.next(t); !ok {
				ended <- "watch"
				return
			}
		}
	}()
	go func() {
		ws.SetReadDeadline(time.Now().Add(60 * time.Second))
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				ended <- "terminal"
				return
			}
		}
	}()
	for range 2 {
		select {
		case what := <-ended:
			t.Logf("the revoked key's %s closed %s after the revocation", what, time.Since(revoked).Round(10*time.Millisecond))
		case <-time.After(30*time.Second - time.Since(revoked)):
			t.Fatal("a watch or terminal of the revoked key is still open 30 s after the revocation")
		}
	}
	// The other keys' connections live on.
	writer.json(t, "POST", "/sandboxes/"+id+"/commands", api.ProcessConfig{Cmd: "true"}, 200, nil)
}
