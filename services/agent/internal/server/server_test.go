package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opensandbox/opensandbox/services/agent/internal/proc"
	"github.com/opensandbox/opensandbox/services/shared/agentapi"
	"github.com/opensandbox/opensandbox/services/shared/api"
)

func newServer(t testing.TB) (*httptest.Server, string) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	r := proc.NewReaper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go r.Reap(ctx)
	srv := httptest.NewServer(New(slog.New(slog.NewTextHandler(io.Discard, nil)), r, "test").Handler())
	t.Cleanup(srv.Close)
	return srv, home
}

func call(t *testing.T, srv *httptest.Server, method, path string, q url.Values, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	u := srv.URL + path
	if q != nil {
		u += "?" + q.Encode()
	}
	req, _ := http.NewRequest(method, u, body)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func TestExecRelativeCwdAndEnv(t *testing.T) {
	srv, home := newServer(t)
	os.Mkdir(filepath.Join(home, "sub"), 0o755)
	b, _ := json.Marshal(agentapi.ExecRequest{Cmd: "pwd; echo $X", Shell: true, Cwd: "sub", Envs: map[string]string{"X": "y"}})
	resp, body := call(t, srv, "POST", "/exec", nil, bytes.NewReader(b))
	var res api.ProcessResult
	json.Unmarshal(body, &res)
	if resp.StatusCode != 200 || res.Stdout != filepath.Join(home, "sub")+"\ny\n" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	resp, body = call(t, srv, "POST", "/exec", nil, strings.NewReader("{bad"))
	if resp.StatusCode != 400 {
		t.Fatalf("bad json: %d %s", resp.StatusCode, body)
	}
}

func TestFiles(t *testing.T) {
	srv, home := newServer(t)
	q := func(kv ...string) url.Values {
		v := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	// Relative paths resolve against HOME; parents are created; mode applies.
	resp, body := call(t, srv, "PUT", "/files", q("path", "a/b/c.txt", "mode", "0600"), strings.NewReader("content"))
	var e api.EntryInfo
	if resp.StatusCode != 200 || json.Unmarshal(body, &e) != nil || e.Path != filepath.Join(home, "a/b/c.txt") || e.Mode != "0600" || e.Size != 7 {
		t.Fatalf("write: %d %s", resp.StatusCode, body)
	}
	if resp, body = call(t, srv, "GET", "/files", q("path", filepath.Join(home, "a/b/c.txt")), nil); string(body) != "content" {
		t.Fatalf("read: %d %q", resp.StatusCode, body)
	}
	if resp, _ = call(t, srv, "PUT", "/files", q("path", "x", "mode", "9z"), strings.NewReader("")); resp.StatusCode != 400 {
		t.Fatalf("bad mode: %d", resp.StatusCode)
	}
	if resp, _ = call(t, srv, "PUT", "/files", q("path", "a"), strings.NewReader("")); resp.StatusCode != 400 {
		t.Fatalf("write over a directory: %d", resp.StatusCode)
	}
	var list []api.EntryInfo
	_, body = call(t, srv, "GET", "/files/list", q("path", "a", "depth", "1"), nil)
	if json.Unmarshal(body, &list); len(list) != 1 || list[0].Name != "b" {
		t.Fatalf("list depth 1: %s", body)
	}
	_, body = call(t, srv, "GET", "/files/list", q("path", "a", "depth", "5"), nil)
	if json.Unmarshal(body, &list); len(list) != 2 {
		t.Fatalf("list depth 5: %s", body)
	}
	if resp, _ = call(t, srv, "GET", "/files/list", q("path", "a/b/c.txt"), nil); resp.StatusCode != 400 {
		t.Fatalf("list a file: %d", resp.StatusCode)
	}
	if resp, _ = call(t, srv, "POST", "/files/rename", nil, strings.NewReader(`{"from":"a/b/c.txt","to":"d/e.txt"}`)); resp.StatusCode != 200 {
		t.Fatalf("rename: %d", resp.StatusCode)
	}
	if resp, _ = call(t, srv, "GET", "/files/stat", q("path", "a/b/c.txt"), nil); resp.StatusCode != 404 {
		t.Fatalf("stat renamed-away: %d", resp.StatusCode)
	}
	if resp, _ = call(t, srv, "POST", "/files/mkdir", q("path", "m/n/o"), nil); resp.StatusCode != 200 {
		t.Fatalf("mkdir: %d", resp.StatusCode)
	}
	if resp, _ = call(t, srv, "DELETE", "/files", q("path", "m"), nil); resp.StatusCode != 204 {
		t.Fatalf("remove: %d", resp.StatusCode)
	}
	if resp, _ = call(t, srv, "DELETE", "/files", q("path", "m"), nil); resp.StatusCode != 404 {
		t.Fatalf("remove missing: %d", resp.StatusCode)
	}
	if resp, _ = call(t, srv, "DELETE", "/files", q("path", "/"), nil); resp.StatusCode != 400 {
		t.Fatalf("remove /: %d", resp.StatusCode)
	}
	if resp, _ = call(t, srv, "GET", "/files", nil, nil); resp.StatusCode != 400 {
		t.Fatalf("missing path: %d", resp.StatusCode)
	}
	// No temporary upload files are left behind.
	entries, _ := os.ReadDir(filepath.Join(home, "d"))
	if len(entries) != 1 {
		t.Fatalf("leftovers in d: %v", entries)
	}
}

// A command whose worker hangs up is killed (its whole process group), not
// left running to its timeout.
func TestExecKilledWhenTheWorkerHangsUp(t *testing.T) {
	srv, _ := newServer(t)
	b, _ := json.Marshal(agentapi.ExecRequest{Cmd: "sleep 6013 & sleep 6014", Shell: true, TimeoutMs: 20_000})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/exec", bytes.NewReader(b))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	waitFor(t, 5*time.Second, "command running", func() bool { return sleeping("6013") && sleeping("6014") })
	cancel()
	<-done
	waitFor(t, 5*time.Second, "command killed after the hang-up", func() bool { return !sleeping("6013") && !sleeping("6014") })
}

// Range reads: one range is a 206 with Content-Range, several a 206
// multipart/byteranges, an unsatisfiable one a JSON 416 the worker maps.
func TestReadFileRanges(t *testing.T) {
	srv, home := newServer(t)
	os.WriteFile(filepath.Join(home, "f"), []byte("0123456789"), 0o644)
	get := func(rng string) (*http.Response, []byte) {
		req, _ := http.NewRequest("GET", srv.URL+"/files?path=f", nil)
		req.Header.Set("Range", rng)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	resp, body := get("bytes=2-4")
	if resp.StatusCode != 206 || string(body) != "234" || resp.Header.Get("Content-Range") != "bytes 2-4/10" {
		t.Fatalf("one range: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Range"), body)
	}
	resp, body = get("bytes=0-1,8-9")
	if resp.StatusCode != 206 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "multipart/byteranges; boundary=") ||
		!strings.Contains(string(body), "01") || !strings.Contains(string(body), "89") {
		t.Fatalf("two ranges: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	resp, body = get("bytes=50-60")
	var eb api.ErrorBody
	if resp.StatusCode != 416 || json.Unmarshal(body, &eb) != nil || eb.Code != "range_not_satisfiable" {
		t.Fatalf("unsatisfiable range: %d %q", resp.StatusCode, body)
	}
}
