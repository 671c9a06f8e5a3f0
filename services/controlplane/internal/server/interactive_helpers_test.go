package server

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/worker/sandboxtest"
)

// sseEvent is one Server-Sent Event as it came over the wire.
type sseEvent struct {
	name string // the event: line
	data string // the data: line
}

// sseStream reads an SSE answer event by event; comment lines are counted.
type sseStream struct {
	resp     *http.Response
	sc       *bufio.Scanner
	comments int
}

// openSSE sends a request and checks that it answers an event stream; hdr
// holds extra header name/value pairs.
func openSSE(t *testing.T, s *stack, method, path string, body string, hdr ...string) *sseStream {
	t.Helper()
	req, _ := http.NewRequest(method, s.url+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	if s.key != "" {
		req.Header.Set("X-API-Key", s.key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b := make([]byte, 512)
		n, _ := resp.Body.Read(b)
		resp.Body.Close()
		t.Fatalf("%s %s: %d %s %q", method, path, resp.StatusCode, resp.Header.Get("Content-Type"), b[:n])
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 4<<20)
	st := &sseStream{resp: resp, sc: sc}
	t.Cleanup(func() { resp.Body.Close() })
	return st
}

// next returns the next event; ok is false when the stream ended.
func (s *sseStream) next(t *testing.T) (ev sseEvent, ok bool) {
	t.Helper()
	for s.sc.Scan() {
		line := s.sc.Text()
		switch {
		case line == "":
			if ev.data != "" {
				return ev, true
			}
		case strings.HasPrefix(line, ":"):
			s.comments++
		case strings.HasPrefix(line, "event: "):
			ev.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			ev.data = strings.TrimPrefix(line, "data: ")
		default:
			t.Fatalf("unexpected SSE line %q", line)
		}
	}
	return ev, false
}

// process decodes an event as a ProcessEvent and checks that the event
// line repeats its type.
func (e sseEvent) process(t *testing.T) api.ProcessEvent {
	t.Helper()
	var pe api.ProcessEvent
	if err := json.Unmarshal([]byte(e.data), &pe); err != nil {
		t.Fatalf("event data %q: %v", e.data, err)
	}
	if pe.Type != e.name {
		t.Fatalf("event line %q, data type %q", e.name, pe.Type)
	}
	return pe
}

// runResult is a streamed run, collected.
type runResult struct {
	pid            int
	stdout, stderr string
	exit           *api.ProcessEvent
	order          []string
}

func (s *sseStream) collect(t *testing.T) runResult {
	t.Helper()
	var r runResult
	var out, errb strings.Builder
	for {
		ev, ok := s.next(t)
		if !ok {
			break
		}
		pe := ev.process(t)
		if len(r.order) == 0 || r.order[len(r.order)-1] != pe.Type {
			r.order = append(r.order, pe.Type)
		}
		switch pe.Type {
		case api.EventStart:
			r.pid = pe.PID
		case api.EventStdout:
			out.Write(pe.Data)
		case api.EventStderr:
			errb.Write(pe.Data)
		case api.EventExit, api.EventError:
			r.exit = &pe
		}
	}
	r.stdout, r.stderr = out.String(), errb.String()
	return r
}

// createBox creates a sandbox of template over HTTP.
func createBox(t *testing.T, s *stack, template string) string {
	t.Helper()
	var sb api.Sandbox
	s.json(t, "POST", "/sandboxes", api.SandboxConfig{TemplateID: template}, 201, &sb)
	return sb.SandboxID
}

// dialPTY opens the terminal WebSocket of a session.
func dialPTY(t *testing.T, s *stack, id, session string, hdr http.Header, query string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	u := "ws" + strings.TrimPrefix(s.url, "http") + "/sandboxes/" + id + "/pty/" + session
	if query != "" {
		u += "?" + query
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, resp, err := websocket.DefaultDialer.DialContext(ctx, u, hdr)
	if ws != nil {
		t.Cleanup(func() { ws.Close() })
	}
	return ws, resp, err
}

// agentPID is the host pid of a sandbox's agent (its PID 1).
func agentPID(t *testing.T, id string) int {
	t.Helper()
	ctr, err := sandboxtest.Runtime(t).Inspect(context.Background(), "osb-"+id)
	if err != nil {
		t.Fatal(err)
	}
	return ctr.PID
}

// inotifyInstances counts the inotify file descriptors a host process holds.
func inotifyInstances(t *testing.T, pid int) int {
	t.Helper()
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, _ := os.Readlink(dir + "/" + e.Name()); l == "anon_inode:inotify" {
			n++
		}
	}
	return n
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	sandboxtest.Eventually(t, within, what, cond)
}
