package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/agentapi"
	"github.com/opensandbox/opensandbox/services/shared/api"
)

func postJSON(t *testing.T, srv *httptest.Server, path string, v any) *http.Response {
	t.Helper()
	b, _ := json.Marshal(v)
	resp, err := http.Post(srv.URL+path, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// collect reads a process frame stream to its end.
func collect(t *testing.T, body io.Reader) (pid int, stdout, stderr string, exit agentapi.Exit, frames []byte) {
	t.Helper()
	fr := agentapi.NewFrameReader(body)
	var out, errb strings.Builder
	for {
		typ, p, err := fr.Next()
		if err != nil {
			t.Fatalf("stream ended without exit: %v", err)
		}
		frames = append(frames, typ)
		switch typ {
		case agentapi.FrameStart:
			var s agentapi.Started
			json.Unmarshal(p, &s)
			pid = s.PID
		case agentapi.FrameStdout:
			out.Write(p)
		case agentapi.FrameStderr:
			errb.Write(p)
		case agentapi.FrameExit:
			json.Unmarshal(p, &exit)
			return pid, out.String(), errb.String(), exit, frames
		}
	}
}

func TestFollowedProcessKeepsOrderAndStreamsApart(t *testing.T) {
	srv, _ := newServer(t)
	resp := postJSON(t, srv, "/processes", agentapi.StartRequest{
		ExecRequest: agentapi.ExecRequest{Cmd: "i=1; while [ $i -le 10000 ]; do echo line $i; i=$((i+1)); done; echo oops >&2; exit 3", Shell: true},
		Follow:      true,
	})
	defer resp.Body.Close()
	pid, stdout, stderr, exit, frames := collect(t, resp.Body)
	if pid <= 0 || frames[0] != agentapi.FrameStart {
		t.Fatalf("first frame %q, pid %d", frames[0], pid)
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if len(lines) != 10000 {
		t.Fatalf("%d lines", len(lines))
	}
	for i, l := range lines {
		if l != "line "+strconv.Itoa(i+1) {
			t.Fatalf("line %d is %q", i+1, l)
		}
	}
	if stderr != "oops\n" || exit.ExitCode != 3 {
		t.Fatalf("stderr %q exit %+v", stderr, exit)
	}
}

func TestFollowedMissingExecutableExits127(t *testing.T) {
	srv, _ := newServer(t)
	resp := postJSON(t, srv, "/processes", agentapi.StartRequest{ExecRequest: agentapi.ExecRequest{Cmd: "no-such-binary-xyz"}, Follow: true})
	defer resp.Body.Close()
	_, _, stderr, exit, _ := collect(t, resp.Body)
	if exit.ExitCode != 127 || !strings.Contains(stderr, "not found") {
		t.Fatalf("exit %+v stderr %q", exit, stderr)
	}
}

// A streamed run lives only as long as its stream.
func TestClosingTheStreamKillsTheProcess(t *testing.T) {
	srv, _ := newServer(t)
	resp := postJSON(t, srv, "/processes", agentapi.StartRequest{ExecRequest: agentapi.ExecRequest{Cmd: "sleep 6003", Shell: true}, Follow: true})
	fr := agentapi.NewFrameReader(resp.Body)
	typ, p, err := fr.Next()
	if err != nil || typ != agentapi.FrameStart {
		t.Fatalf("first frame %q %v", typ, err)
	}
	var st agentapi.Started
	json.Unmarshal(p, &st)
	resp.Body.Close()
	waitFor(t, 5*time.Second, "process killed", func() bool {
		return !running(t, srv, st.PID)
	})
}

func running(t *testing.T, srv *httptest.Server, pid int) bool {
	resp, err := http.Get(srv.URL + "/processes")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list []api.ProcessInfo
	json.NewDecoder(resp.Body).Decode(&list)
	for _, p := range list {
		if p.PID == pid {
			return p.Running
		}
	}
	t.Fatalf("pid %d not listed", pid)
	return false
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within %s", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestBackgroundProcessStdinReplayAndSignals(t *testing.T) {
	srv, _ := newServer(t)
	resp := postJSON(t, srv, "/processes", agentapi.StartRequest{ExecRequest: agentapi.ExecRequest{Cmd: "cat"}, KeepStdin: true, Tag: "echoer"})
	var st agentapi.Started
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if st.PID <= 0 {
		t.Fatalf("start: %d", resp.StatusCode)
	}
	base := fmt.Sprintf("%s/processes/%d", srv.URL, st.PID)
	for _, chunk := range []string{"first\n", "second\n"} {
		r, err := http.Post(base+"/stdin", "application/octet-stream", strings.NewReader(chunk))
		if err != nil || r.StatusCode != 204 {
			t.Fatalf("stdin: %v %v", err, r.StatusCode)
		}
		r.Body.Close()
	}
	req, _ := http.NewRequest("DELETE", base+"/stdin", nil)
	if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode != 204 {
		t.Fatalf("close stdin: %v", err)
	}
	// Connecting after the fact replays what it printed, then the exit.
	r, err := http.Get(base + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	_, stdout, _, exit, _ := collect(t, r.Body)
	r.Body.Close()
	if stdout != "first\nsecond\n" || exit.ExitCode != 0 {
		t.Fatalf("stdout %q exit %+v", stdout, exit)
	}
	r, _ = http.Post(base+"/stdin", "application/octet-stream", strings.NewReader("late"))
	if r.StatusCode != 409 {
		t.Fatalf("stdin after close: %d", r.StatusCode)
	}

	// Signals by name reach the process group.
	resp = postJSON(t, srv, "/processes", agentapi.StartRequest{ExecRequest: agentapi.ExecRequest{Cmd: "trap 'echo got-term; exit 9' TERM; sleep 6004 & echo ready; wait", Shell: true}})
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	base = fmt.Sprintf("%s/processes/%d", srv.URL, st.PID)
	waitStdout(t, base, "ready\n") // the trap is in place and the sleep forked
	// Forked is not yet exec'd: a signal before the exec meets the shell's
	// trap in the child, which then runs sleep anyway. Wait for sleep itself.
	waitFor(t, 5*time.Second, "the background sleep runs", func() bool { return sleeping("6004") })
	if r := postJSON(t, srv, fmt.Sprintf("/processes/%d/signal", st.PID), api.SignalRequest{Signal: "SIGTERM"}); r.StatusCode != 204 {
		t.Fatalf("signal: %d", r.StatusCode)
	}
	r, _ = http.Get(base + "/stream")
	_, stdout, _, exit, _ = collect(t, r.Body)
	r.Body.Close()
	if stdout != "ready\ngot-term\n" || exit.ExitCode != 9 {
		t.Fatalf("after SIGTERM: %q %+v", stdout, exit)
	}
	waitFor(t, 5*time.Second, "the group's background sleep got SIGTERM too", func() bool { return !sleeping("6004") })
	if r := postJSON(t, srv, "/processes/999999/signal", api.SignalRequest{Signal: "TERM"}); r.StatusCode != 404 {
		t.Fatalf("unknown pid: %d", r.StatusCode)
	}
	if r := postJSON(t, srv, fmt.Sprintf("/processes/%d/signal", st.PID), api.SignalRequest{Signal: "SIGBOGUS"}); r.StatusCode != 400 {
		t.Fatalf("bad signal: %d", r.StatusCode)
	}
}

// waitStdout follows the process at base (its URL) until its stdout
// contains want.
func waitStdout(t *testing.T, base, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/stream", nil)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	fr := agentapi.NewFrameReader(r.Body)
	var out strings.Builder
	for !strings.Contains(out.String(), want) {
		typ, p, err := fr.Next()
		if err != nil || typ == agentapi.FrameExit {
			t.Fatalf("waiting for %q: %v; stdout %q", want, err, out.String())
		}
		if typ == agentapi.FrameStdout {
			out.Write(p)
		}
	}
}

// ptyConn is an attached terminal session, as the worker sees it.
type ptyConn struct {
	rw io.ReadWriteCloser
	fr *agentapi.FrameReader
}

func attach(t *testing.T, srv *httptest.Server, id string) *ptyConn {
	t.Helper()
	req, _ := http.NewRequest("GET", srv.URL+"/pty/"+id+"/attach", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", agentapi.UpgradeProtocol)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("attach: %d", resp.StatusCode)
	}
	rw := resp.Body.(io.ReadWriteCloser)
	t.Cleanup(func() { rw.Close() })
	return &ptyConn{rw: rw, fr: agentapi.NewFrameReader(bufio.NewReader(rw))}
}

func (c *ptyConn) send(t *testing.T, s string) {
	t.Helper()
	if err := agentapi.WriteFrame(c.rw, agentapi.FrameData, []byte(s)); err != nil {
		t.Fatal(err)
	}
}

// until reads output until it contains want; it returns everything read.
func (c *ptyConn) until(t *testing.T, want string) string {
	t.Helper()
	var seen strings.Builder
	done := make(chan struct{})
	go func() {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			c.rw.Close()
		}
	}()
	defer close(done)
	for !strings.Contains(seen.String(), want) {
		typ, p, err := c.fr.Next()
		if err != nil {
			t.Fatalf("waiting for %q: %v; output so far %q", want, err, seen.String())
		}
		if typ == agentapi.FrameData {
			seen.Write(p)
		}
	}
	return seen.String()
}

func TestPTYSession(t *testing.T) {
	srv, _ := newServer(t)
	resp := postJSON(t, srv, "/pty", agentapi.PTYRequest{Shell: "/bin/sh", Cols: 100, Rows: 30, Envs: map[string]string{"PS1": "$ "}})
	var info agentapi.PTYInfo
	json.NewDecoder(resp.Body).Decode(&info)
	resp.Body.Close()
	if resp.StatusCode != 201 || info.ID == "" {
		t.Fatalf("create: %d %+v", resp.StatusCode, info)
	}
	c := attach(t, srv, info.ID)
	c.send(t, "tty; echo TERM=$TERM; stty size\n")
	out := c.until(t, "30 100")
	if !strings.Contains(out, "/dev/pts/") || !strings.Contains(out, "TERM=xterm-256color") {
		t.Fatalf("output %q", out)
	}
	// Resize in-band and by route.
	b, _ := json.Marshal(agentapi.Size{Cols: 132, Rows: 43})
	agentapi.WriteFrame(c.rw, agentapi.FrameResize, b)
	c.send(t, "stty size\n")
	c.until(t, "43 132")
	if r := postJSON(t, srv, "/pty/"+info.ID+"/resize", agentapi.Size{Cols: 90, Rows: 20}); r.StatusCode != 200 {
		t.Fatalf("resize route: %d", r.StatusCode)
	}
	c.send(t, "stty size\n")
	c.until(t, "20 90")

	// Ctrl-C interrupts the foreground job (once it runs), the shell lives
	// on and reports the job killed by SIGINT.
	c.send(t, "sleep 6005\n")
	waitFor(t, 5*time.Second, "sleep running", func() bool { return sleeping("6005") })
	c.send(t, "\x03")
	c.send(t, "echo after-$?-$((40+2))\n")
	c.until(t, "after-130-42")
	waitFor(t, 5*time.Second, "sleep interrupted", func() bool { return !sleeping("6005") })

	// A second attach replaces the first and replays the scrollback.
	c2 := attach(t, srv, info.ID)
	c2.until(t, "after-130-42")
	for {
		if _, _, err := c.fr.Next(); err != nil {
			break // the replaced connection is closed
		}
	}
	c2.send(t, "exit 3\n")
	for {
		typ, p, err := c2.fr.Next()
		if err != nil {
			t.Fatalf("no exit frame: %v", err)
		}
		if typ == agentapi.FrameExit {
			var ex agentapi.Exit
			json.Unmarshal(p, &ex)
			if ex.ExitCode != 3 {
				t.Fatalf("exit code %d", ex.ExitCode)
			}
			break
		}
	}
	r, _ := http.Get(srv.URL + "/pty/" + info.ID + "/wait")
	json.NewDecoder(r.Body).Decode(&info)
	r.Body.Close()
	if info.Running || info.ExitCode != 3 || info.BytesIn == 0 || info.BytesOut == 0 || info.EndedAt == nil {
		t.Fatalf("after exit: %+v", info)
	}
}

func TestPTYDeleteKillsTheSession(t *testing.T) {
	srv, _ := newServer(t)
	resp := postJSON(t, srv, "/pty", agentapi.PTYRequest{Shell: "/bin/sh"})
	var info agentapi.PTYInfo
	json.NewDecoder(resp.Body).Decode(&info)
	resp.Body.Close()
	c := attach(t, srv, info.ID)
	c.send(t, "sleep 6006 &\necho started-$((1+1))\n")
	c.until(t, "started-2")
	req, _ := http.NewRequest("DELETE", srv.URL+"/pty/"+info.ID, nil)
	if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode != 204 {
		t.Fatalf("delete: %v", err)
	}
	waitFor(t, 5*time.Second, "background job of the session killed", func() bool { return !sleeping("6006") })
	if r, _ := http.Get(srv.URL + "/pty/" + info.ID); r.StatusCode != 404 {
		t.Fatalf("deleted session still there: %d", r.StatusCode)
	}
}

// sleeping reports whether a live `sleep arg` process exists.
func sleeping(arg string) bool {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if string(b) == "sleep\x00"+arg+"\x00" {
			st, _ := os.ReadFile("/proc/" + e.Name() + "/stat")
			if !strings.Contains(string(st), ") Z ") {
				return true
			}
		}
	}
	return false
}

func inotifyFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, _ := os.Readlink("/proc/self/fd/" + e.Name()); l == "anon_inode:inotify" {
			n++
		}
	}
	return n
}

func TestWatchEventsAndRelease(t *testing.T) {
	srv, home := newServer(t)
	dir := filepath.Join(home, "w")
	os.Mkdir(dir, 0o755)
	before := inotifyFDs(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/files/watch?recursive=true&path="+dir, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("watch: %v", err)
	}
	fr := agentapi.NewFrameReader(resp.Body)
	if typ, _, _ := fr.Next(); typ != agentapi.FrameReady {
		t.Fatalf("first frame %q", typ)
	}
	next := func(want api.WatchEvent) {
		t.Helper()
		for {
			typ, p, err := fr.Next()
			if err != nil {
				t.Fatalf("waiting for %+v: %v", want, err)
			}
			if typ != agentapi.FrameEvent {
				continue
			}
			var ev api.WatchEvent
			json.Unmarshal(p, &ev)
			if ev == want {
				return
			}
		}
	}
	f := filepath.Join(dir, "a.txt")
	os.WriteFile(f, nil, 0o644)
	next(api.WatchEvent{Type: "create", Path: f})
	os.WriteFile(f, []byte("x"), 0o644)
	next(api.WatchEvent{Type: "write", Path: f})
	os.Chmod(f, 0o600)
	next(api.WatchEvent{Type: "chmod", Path: f})
	os.Rename(f, filepath.Join(dir, "b.txt"))
	next(api.WatchEvent{Type: "rename", Path: f})
	next(api.WatchEvent{Type: "create", Path: filepath.Join(dir, "b.txt")})
	// A directory made after the watch started is watched too.
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o755)
	next(api.WatchEvent{Type: "create", Path: sub, IsDir: true})
	os.WriteFile(filepath.Join(sub, "deep"), []byte("y"), 0o644)
	next(api.WatchEvent{Type: "create", Path: filepath.Join(sub, "deep")})
	os.Remove(filepath.Join(dir, "b.txt"))
	next(api.WatchEvent{Type: "remove", Path: filepath.Join(dir, "b.txt")})

	if got := inotifyFDs(t); got != before+1 {
		t.Fatalf("%d inotify instances during the watch, want %d", got, before+1)
	}
	cancel()
	resp.Body.Close()
	waitFor(t, 5*time.Second, "watch released", func() bool {
		var h agentapi.Health
		r, err := http.Get(srv.URL + "/health")
		if err != nil {
			t.Fatal(err)
		}
		json.NewDecoder(r.Body).Decode(&h)
		r.Body.Close()
		return inotifyFDs(t) == before && h.Watches == 0
	})
	if r, _ := http.Get(srv.URL + "/files/watch?path=/no/such/dir"); r.StatusCode != 404 {
		t.Fatalf("missing path: %d", r.StatusCode)
	}
}

// A client connected to a background process that stops reading does not
// stop the process: it is dropped once it falls behind, and its stream
// ends with an error frame.
func TestStalledStreamDoesNotHoldTheProcess(t *testing.T) {
	srv, _ := newServer(t)
	resp := postJSON(t, srv, "/processes", agentapi.StartRequest{
		ExecRequest: agentapi.ExecRequest{Cmd: "read go; head -c 67108864 /dev/zero", Shell: true}, KeepStdin: true,
	})
	var st agentapi.Started
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	base := fmt.Sprintf("%s/processes/%d", srv.URL, st.PID)
	stalled, err := http.Get(base + "/stream") // connected before any output, then never read
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Body.Close()
	if r, err := http.Post(base+"/stdin", "application/octet-stream", strings.NewReader("go\n")); err != nil || r.StatusCode != 204 {
		t.Fatalf("stdin: %v %v", err, r)
	}
	waitFor(t, 20*time.Second, "process done while a stream stalls", func() bool { return !running(t, srv, st.PID) })

	fr := agentapi.NewFrameReader(stalled.Body)
	for {
		typ, p, err := fr.Next()
		if err != nil {
			t.Fatalf("stalled stream ended without an error frame: %v", err)
		}
		if typ == agentapi.FrameExit {
			t.Fatal("stalled stream got every byte: the process waited for it")
		}
		if typ == agentapi.FrameError {
			var eb api.ErrorBody
			if json.Unmarshal(p, &eb); eb.Code != "stream_lagged" {
				t.Fatalf("error frame %s", p)
			}
			return
		}
	}
}

// One sandbox cannot use up the host's inotify instances: beyond
// maxWatches at once the agent answers 429, and a watch that ends frees
// its place.
func TestWatchesAreCapped(t *testing.T) {
	srv, home := newServer(t)
	open := func() (*http.Response, context.CancelFunc) {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/files/watch?path="+home, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cancel(); resp.Body.Close() })
		return resp, cancel
	}
	var first context.CancelFunc
	for i := range maxWatches {
		resp, cancel := open()
		if resp.StatusCode != 200 {
			t.Fatalf("watch %d: %d", i+1, resp.StatusCode)
		}
		if i == 0 {
			first = cancel
		}
	}
	resp, _ := open()
	var eb api.ErrorBody
	if json.NewDecoder(resp.Body).Decode(&eb); resp.StatusCode != 429 || eb.Code != "too_many_watches" {
		t.Fatalf("watch over the cap: %d %+v", resp.StatusCode, eb)
	}
	first()
	waitFor(t, 5*time.Second, "a place freed", func() bool {
		resp, cancel := open()
		defer cancel()
		return resp.StatusCode == 200
	})
}
