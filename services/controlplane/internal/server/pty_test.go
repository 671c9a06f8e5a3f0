package server

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/opensandbox/opensandbox/services/shared/api"
)

// term is a client's view of a terminal WebSocket.
type term struct {
	t    *testing.T
	ws   *websocket.Conn
	seen strings.Builder
	exit *int
}

func (c *term) send(s string) {
	c.t.Helper()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, []byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *term) control(v any) {
	c.t.Helper()
	b, _ := json.Marshal(v)
	if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		c.t.Fatal(err)
	}
}

// until reads until the output seen since the last call contains want.
func (c *term) until(want string) string {
	c.t.Helper()
	c.ws.SetReadDeadline(time.Now().Add(15 * time.Second))
	for !strings.Contains(c.seen.String(), want) {
		typ, msg, err := c.ws.ReadMessage()
		if err != nil {
			c.t.Fatalf("waiting for %q: %v; output %q", want, err, c.seen.String())
		}
		if typ == websocket.TextMessage {
			c.t.Fatalf("control message %s while waiting for %q", msg, want)
		}
		c.seen.Write(msg)
	}
	out := c.seen.String()
	c.seen.Reset()
	return out
}

// waitExit reads until the exit message and the close that follows it.
func (c *term) waitExit() (int, int) {
	c.t.Helper()
	c.ws.SetReadDeadline(time.Now().Add(15 * time.Second))
	for {
		typ, msg, err := c.ws.ReadMessage()
		if err != nil {
			ce, ok := err.(*websocket.CloseError)
			if !ok || c.exit == nil {
				c.t.Fatalf("no exit message before %v", err)
			}
			return *c.exit, ce.Code
		}
		if typ == websocket.TextMessage {
			var ctl api.PTYControl
			if json.Unmarshal(msg, &ctl) != nil || ctl.Type != "exit" || ctl.ExitCode == nil {
				c.t.Fatalf("control message %s", msg)
			}
			c.exit = ctl.ExitCode
		}
	}
}

func openTerm(t *testing.T, s *stack, id, session string) *term {
	t.Helper()
	hdr := http.Header{}
	if s.key != "" {
		hdr.Set("X-API-Key", s.key)
	}
	ws, resp, err := dialPTY(t, s, id, session, hdr, "")
	if err != nil {
		t.Fatalf("dial: %v (%v)", err, resp)
	}
	return &term{t: t, ws: ws}
}

// sandboxRuns reports whether a process whose command line starts with
// args runs in the sandbox.
func sandboxRuns(t *testing.T, s *stack, id, args string) bool {
	t.Helper()
	var res api.ProcessResult
	s.json(t, "POST", "/sandboxes/"+id+"/commands", api.ProcessConfig{Cmd: "ps -o args"}, 200, &res)
	for _, line := range strings.Split(res.Stdout, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), args) {
			return true
		}
	}
	return false
}

func createPTY(t *testing.T, s *stack, id string, cfg api.PTYConfig) string {
	t.Helper()
	var ps api.PTYSession
	s.json(t, "POST", "/sandboxes/"+id+"/pty", cfg, 201, &ps)
	if ps.SessionID == "" || ps.SandboxID != id {
		t.Fatalf("create pty: %+v", ps)
	}
	return ps.SessionID
}

func TestPTYSession(t *testing.T) {
	s := startCombined(t, nil)
	id := createBox(t, s, "busybox")
	session := createPTY(t, s, id, api.PTYConfig{Cols: 100, Rows: 30})
	c := openTerm(t, s, id, session)

	c.send("tty; echo term=$TERM\n")
	out := c.until("term=xterm-256color")
	if !strings.Contains(out, "/dev/pts/") {
		t.Fatalf("tty printed no /dev/pts/N: %q", out)
	}
	// Typed input echoes (the terminal, not the command, prints it back).
	c.send("echo typed-$((20+22))")
	c.until("echo typed-$((20+22))")
	c.send("\n")
	c.until("typed-42")

	c.send("stty size\n")
	c.until("30 100")
	c.control(api.PTYControl{Type: "resize", Cols: 132, Rows: 43})
	c.send("stty size\n")
	c.until("43 132")
	s.json(t, "POST", "/sandboxes/"+id+"/pty/"+session+"/resize", api.PTYSize{Cols: 90, Rows: 20}, 200, nil)
	c.send("stty size\n")
	c.until("20 90")

	// Ctrl-C interrupts a running sleep; the shell lives on and reports
	// the job killed by SIGINT (130).
	c.send("sleep 6201\n")
	eventually(t, 10*time.Second, "sleep running", func() bool { return sandboxRuns(t, s, id, "sleep 6201") })
	c.send("\x03")
	c.send("echo after-$?-$((3*3))\n")
	c.until("after-130-9")
	if sandboxRuns(t, s, id, "sleep 6201") {
		t.Fatal("sleep still running after Ctrl-C")
	}

	c.send("exit 3\n")
	code, closeCode := c.waitExit()
	if code != 3 || closeCode != websocket.CloseNormalClosure {
		t.Fatalf("exit code %d, close code %d", code, closeCode)
	}

	// The session is recorded in the sandbox's SQLite with its byte counts.
	eventually(t, 5*time.Second, "pty_sessions row ended", func() bool {
		rows, err := s.mgr.PTYSessions(t.Context(), id)
		if err != nil || len(rows) != 1 {
			t.Fatalf("rows %+v %v", rows, err)
		}
		r := rows[0]
		return r.ID == session && !r.EndedAt.IsZero() && r.BytesIn > 0 && r.BytesOut > r.BytesIn
	})
}

// A session outlives its WebSocket; a new one first replays the scrollback.
func TestPTYReconnectReplaysScrollback(t *testing.T) {
	s := startCombined(t, nil)
	id := createBox(t, s, "base")
	session := createPTY(t, s, id, api.PTYConfig{})
	c := openTerm(t, s, id, session)
	c.send("echo $0; X=kept; echo marker-$((5*5))\n")
	if out := c.until("marker-25"); !strings.Contains(out, "bash") {
		t.Fatalf("default shell on the base image is not bash: %q", out)
	}
	c.ws.Close() // the client drops

	// Output produced while nobody is attached is kept too.
	c2 := openTerm(t, s, id, session)
	c2.until("marker-25") // replayed
	c2.send("echo still-$X\n")
	c2.until("still-kept")

	// A third connection replaces the second, which is closed.
	c3 := openTerm(t, s, id, session)
	c3.until("still-kept")
	c2.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, _, err := c2.ws.ReadMessage(); err != nil {
			break
		}
	}
	resp, _ := s.do(t, "DELETE", "/sandboxes/"+id+"/pty/"+session, nil)
	if resp.StatusCode != 204 {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	if code, _ := c3.waitExit(); code == 0 {
		t.Fatalf("killed shell exited 0")
	}
	resp, body := s.do(t, "POST", "/sandboxes/"+id+"/pty/"+session+"/resize", strings.NewReader(`{"cols":10,"rows":10}`))
	wantError(t, resp, body, 404, "pty_not_found")
}

// Credentials are checked before the upgrade: a wrong or missing key never
// reaches the WebSocket handshake; the key is accepted in the ways a
// browser can send it, and a subprotocol carrying it is echoed.
func TestPTYAuthBeforeUpgrade(t *testing.T) {
	s := startCombined(t, func(c *Config) { c.APIKey = "pty-secret" })
	id := createBox(t, s, "busybox")
	session := createPTY(t, s, id, api.PTYConfig{})
	for _, tc := range []struct {
		name   string
		hdr    http.Header
		query  string
		status int
	}{
		{"missing", http.Header{}, "", 401},
		{"wrong header", http.Header{"X-Api-Key": {"nope"}}, "", 403},
		{"wrong query", http.Header{}, "token=nope", 403},
		{"wrong subprotocol", http.Header{"Sec-Websocket-Protocol": {"bearer.nope"}}, "", 403},
	} {
		ws, resp, err := dialPTY(t, s, id, session, tc.hdr, tc.query)
		if err == nil || ws != nil || resp == nil || resp.StatusCode != tc.status {
			t.Errorf("%s: err %v, response %v, want %d before any upgrade", tc.name, err, resp, tc.status)
		}
	}
	for _, tc := range []struct {
		name  string
		hdr   http.Header
		query string
	}{
		{"token query", http.Header{}, "token=pty-secret"},
		{"api_key query", http.Header{}, "api_key=pty-secret"},
		{"subprotocol", http.Header{"Sec-Websocket-Protocol": {"bearer.pty-secret"}}, ""},
	} {
		ws, resp, err := dialPTY(t, s, id, session, tc.hdr, tc.query)
		if err != nil {
			t.Fatalf("%s: %v %v", tc.name, err, resp)
		}
		if tc.name == "subprotocol" && ws.Subprotocol() != "bearer.pty-secret" {
			t.Errorf("subprotocol not echoed: %q", ws.Subprotocol())
		}
		c := &term{t: t, ws: ws}
		c.send("echo ok-$((2*4))\n")
		c.until("ok-8")
		ws.Close()
	}
	// Unknown sessions and plain HTTP are refused before the upgrade too.
	_, resp, err := dialPTY(t, s, id, "nosuchsession", http.Header{"X-Api-Key": {"pty-secret"}}, "")
	if err == nil || resp == nil || resp.StatusCode != 404 {
		t.Errorf("unknown session: %v %v", err, resp)
	}
	resp2, body := s.do(t, "GET", "/sandboxes/"+id+"/pty/"+session, nil)
	wantError(t, resp2, body, 426, "")
}
