package server

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/api"
)

// A command printing 10,000 lines arrives complete and in order, with
// stderr kept apart from stdout, as SSE exactly as docs/api.md shows.
func TestStreamedRunKeepsEveryLineInOrder(t *testing.T) {
	s := startCombined(t, nil)
	id := createBox(t, s, "busybox")
	body, _ := json.Marshal(api.ProcessConfig{Cmd: "seq 1 10000; echo to-stderr >&2; seq 1 3 >&2; exit 7", Stream: true})
	st := openSSE(t, s, "POST", "/sandboxes/"+id+"/commands", string(body))
	r := st.collect(t)
	if r.pid <= 0 || r.order[0] != "start" {
		t.Fatalf("first event %v, pid %d", r.order, r.pid)
	}
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != 10000 {
		t.Fatalf("%d stdout lines", len(lines))
	}
	for i, l := range lines {
		if l != strconv.Itoa(i+1) {
			t.Fatalf("stdout line %d is %q", i+1, l)
		}
	}
	if r.stderr != "to-stderr\n1\n2\n3\n" {
		t.Fatalf("stderr %q", r.stderr)
	}
	if r.exit == nil || r.exit.Type != "exit" || r.exit.ExitCode != 7 || r.order[len(r.order)-1] != "exit" {
		t.Fatalf("end %+v, order %v", r.exit, r.order)
	}
	// The same kind of run, asked for with the Accept header instead of "stream".
	st = openSSE(t, s, "POST", "/sandboxes/"+id+"/commands", `{"cmd":"echo hi"}`, "Accept", "text/event-stream")
	if r := st.collect(t); r.stdout != "hi\n" || r.exit.ExitCode != 0 {
		t.Fatalf("Accept: text/event-stream run: %+v", r)
	}
}

// The wire format is the documented one, byte for byte.
func TestStreamedRunWireFormat(t *testing.T) {
	s := startCombined(t, nil)
	id := createBox(t, s, "busybox")
	resp, body := s.do(t, "POST", "/sandboxes/"+id+"/commands", strings.NewReader(`{"cmd":"printf hello","stream":true}`))
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var pid int
	if _, err := fmt.Sscanf(string(body), "event: start\ndata: {\"type\":\"start\",\"pid\":%d}\n\n", &pid); err != nil || pid <= 0 {
		t.Fatalf("start event: %v in %q", err, body)
	}
	want := "event: stdout\ndata: {\"type\":\"stdout\",\"data\":\"aGVsbG8=\"}\n\n" +
		"event: exit\ndata: {\"type\":\"exit\",\"exitCode\":0,\"timedOut\":false}\n\n"
	if !strings.HasSuffix(string(body), want) {
		t.Fatalf("body %q, want it to end with %q", body, want)
	}
	// Errors before the stream starts are plain JSON errors.
	resp, body = s.do(t, "POST", "/sandboxes/"+id+"/commands", strings.NewReader(`{"cmd":"true","stream":true,"cwd":"/no/such/dir"}`))
	wantError(t, resp, body, 400, "invalid_argument")
	resp, body = s.do(t, "POST", "/sandboxes/nope/commands", strings.NewReader(`{"cmd":"true","stream":true}`))
	wantError(t, resp, body, 404, "sandbox_not_found")
	resp, body = s.do(t, "POST", "/sandboxes/"+id+"/commands", strings.NewReader(`{"cmd":"true","stream":true,"background":true}`))
	wantError(t, resp, body, 400, "invalid_argument")
	// A timed-out streamed run ends with exit code 124.
	resp, body = s.do(t, "POST", "/sandboxes/"+id+"/commands", strings.NewReader(`{"cmd":"sleep 30","stream":true,"timeout":1}`))
	if !strings.HasSuffix(string(body), "data: {\"type\":\"exit\",\"exitCode\":124,\"timedOut\":true}\n\n") {
		t.Fatalf("timeout: %q", body)
	}
}

// A streamed run dies with its client.
func TestStreamedRunKilledWhenClientLeaves(t *testing.T) {
	s := startCombined(t, nil)
	id := createBox(t, s, "busybox")
	st := openSSE(t, s, "POST", "/sandboxes/"+id+"/commands", `{"cmd":"echo started; sleep 6101","stream":true}`)
	ev, _ := st.next(t)
	pid := ev.process(t).PID
	st.next(t) // "started"
	st.resp.Body.Close()
	eventually(t, 10*time.Second, "streamed process killed after the client left", func() bool {
		var list []api.ProcessInfo
		s.json(t, "GET", "/sandboxes/"+id+"/processes", nil, 200, &list)
		for _, p := range list {
			if p.PID == pid {
				return !p.Running
			}
		}
		t.Fatalf("pid %d not listed: %+v", pid, list)
		return false
	})
}

// A background process is listed while it runs, then killed.
func TestBackgroundProcessListedThenKilled(t *testing.T) {
	s := startCombined(t, nil)
	id := createBox(t, s, "busybox")
	var started api.ProcessStarted
	s.json(t, "POST", "/sandboxes/"+id+"/commands", api.ProcessConfig{Cmd: "sleep 30", Background: true, Tag: "napper"}, 200, &started)
	if started.PID <= 0 {
		t.Fatalf("pid %d", started.PID)
	}
	find := func() api.ProcessInfo {
		var list []api.ProcessInfo
		s.json(t, "GET", "/sandboxes/"+id+"/processes", nil, 200, &list)
		for _, p := range list {
			if p.PID == started.PID {
				return p
			}
		}
		t.Fatalf("pid %d not listed in %+v", started.PID, list)
		return api.ProcessInfo{}
	}
	p := find()
	if !p.Running || p.ExitCode != nil || p.Cmd != "sleep 30" || p.Tag != "napper" || p.StartedAt.IsZero() {
		t.Fatalf("listed as %+v", p)
	}
	// exitCode is null, not 0, while it runs.
	_, raw := s.do(t, "GET", "/sandboxes/"+id+"/processes", nil)
	if !strings.Contains(string(raw), `"exitCode":null`) {
		t.Fatalf("running process JSON %s", raw)
	}
	resp, _ := s.do(t, "DELETE", fmt.Sprintf("/sandboxes/%s/processes/%d", id, started.PID), nil)
	if resp.StatusCode != 204 {
		t.Fatalf("kill: %d", resp.StatusCode)
	}
	eventually(t, 10*time.Second, "sleep killed", func() bool { return !find().Running })
	if p := find(); p.ExitCode == nil || *p.ExitCode != 128+9 {
		t.Fatalf("after kill: %+v", p)
	}
	resp, body := s.do(t, "DELETE", "/sandboxes/"+id+"/processes/999999", nil)
	wantError(t, resp, body, 404, "process_not_found")
	resp, body = s.do(t, "POST", "/sandboxes/"+id+"/processes/999999/signal", strings.NewReader(`{"signal":"TERM"}`))
	wantError(t, resp, body, 404, "process_not_found")
}

// stdin reaches cat; connecting replays what it printed, then follows it
// live to its exit; signals by name arrive.
func TestStdinReachesCatAndConnectReplays(t *testing.T) {
	s := startCombined(t, nil)
	id := createBox(t, s, "busybox")
	var started api.ProcessStarted
	s.json(t, "POST", "/sandboxes/"+id+"/commands", api.ProcessConfig{Cmd: "cat", Background: true}, 200, &started)
	base := fmt.Sprintf("/sandboxes/%s/processes/%d", id, started.PID)
	resp, _ := s.do(t, "POST", base+"/stdin", strings.NewReader("one\n"))
	if resp.StatusCode != 204 {
		t.Fatalf("stdin: %d", resp.StatusCode)
	}
	st := openSSE(t, s, "GET", base+"/stream", "")
	var out strings.Builder
	for !strings.Contains(out.String(), "one\n") {
		ev, ok := st.next(t)
		if !ok {
			t.Fatal("stream ended early")
		}
		out.Write(ev.process(t).Data)
	}
	// Live: a second line written now arrives on the open stream.
	s.do(t, "POST", base+"/stdin", strings.NewReader("two\n"))
	resp, _ = s.do(t, "DELETE", base+"/stdin", nil)
	if resp.StatusCode != 204 {
		t.Fatalf("close stdin: %d", resp.StatusCode)
	}
	r := st.collect(t)
	if out.String()+r.stdout != "one\ntwo\n" || r.exit == nil || r.exit.ExitCode != 0 {
		t.Fatalf("output %q, end %+v", out.String()+r.stdout, r.exit)
	}
	resp, body := s.do(t, "POST", base+"/stdin", strings.NewReader("late\n"))
	wantError(t, resp, body, 409, "stdin_closed")

	// A signal by name reaches a trap.
	s.json(t, "POST", "/sandboxes/"+id+"/commands", api.ProcessConfig{Cmd: "trap 'echo caught; exit 5' USR1; echo ready; while true; do sleep 0.05; done", Background: true}, 200, &started)
	base = fmt.Sprintf("/sandboxes/%s/processes/%d", id, started.PID)
	st = openSSE(t, s, "GET", base+"/stream", "")
	if ev, _ := st.next(t); string(ev.process(t).Data) != "ready\n" {
		t.Fatalf("first event %+v", ev)
	}
	resp, body = s.do(t, "POST", base+"/signal", strings.NewReader(`{"signal":"SIGUSR1"}`))
	if resp.StatusCode != 204 {
		t.Fatalf("signal: %d %s", resp.StatusCode, body)
	}
	if r := st.collect(t); r.stdout != "caught\n" || r.exit.ExitCode != 5 {
		t.Fatalf("after signal: %+v", r)
	}
}
