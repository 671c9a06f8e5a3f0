package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/shared/obs"
	"github.com/opensandbox/opensandbox/services/worker/sandbox"
	"github.com/opensandbox/opensandbox/services/worker/sandboxtest"
)

// stack is a combined server on a real listener with a real sandbox manager.
type stack struct {
	url string
	key string
	mgr *sandbox.Manager
}

func startCombined(t *testing.T, mutate func(*Config)) *stack {
	t.Helper()
	rt := sandboxtest.Runtime(t)
	cfg := Config{Mode: "combined", MaxUpload: 1 << 30, Sandbox: sandboxtest.Config(t)}
	if mutate != nil {
		mutate(&cfg)
	}
	reg := obs.NewRegistry()
	mgr, err := sandbox.New(sandboxtest.Logger(t), rt, cfg.Sandbox, sandbox.NewMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	app := NewCombined(sandboxtest.Logger(t), reg, mgr, cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go app.Listener(ln)
	t.Cleanup(func() {
		app.Shutdown()
		for _, sb := range mgr.List(context.Background(), "") {
			mgr.Kill(context.Background(), sb.SandboxID)
		}
		mgr.Close()
		sandboxtest.ExpectNoContainers(t, rt, cfg.Sandbox.WorkerID)
	})
	return &stack{url: "http://" + ln.Addr().String(), key: cfg.APIKey, mgr: mgr}
}

func (s *stack) do(t *testing.T, method, path string, body io.Reader, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, s.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if s.key != "" {
		req.Header.Set("X-API-Key", s.key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func (s *stack) json(t *testing.T, method, path string, in any, wantStatus int, out any) {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	resp, b := s.do(t, method, path, body, "Content-Type", "application/json")
	if resp.StatusCode != wantStatus {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, wantStatus, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: decode %q: %v", method, path, b, err)
		}
	}
}

func wantError(t *testing.T, resp *http.Response, body []byte, status int, code string) {
	t.Helper()
	var eb api.ErrorBody
	if resp.StatusCode != status || json.Unmarshal(body, &eb) != nil || eb.Error == "" || (code != "" && eb.Code != code) {
		t.Fatalf("want %d %s, got %d %s", status, code, resp.StatusCode, body)
	}
}

// The handoff's Tier 1 flow: {"template":"base"} creates a Debian sandbox.
func TestHandoffTier1Flow(t *testing.T) {
	s := startCombined(t, nil)
	resp, body := s.do(t, "GET", "/health", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"status":"ok"`) {
		t.Fatalf("health: %d %s", resp.StatusCode, body)
	}
	var sb api.Sandbox
	s.json(t, "POST", "/sandboxes", map[string]any{"template": "base"}, 201, &sb)
	if sb.TemplateID != "base" || sb.SandboxID == "" || sb.Status != "running" {
		t.Fatalf("created %+v", sb)
	}
	var res api.ProcessResult
	s.json(t, "POST", "/sandboxes/"+sb.SandboxID+"/commands", api.ProcessConfig{Cmd: "python3 -c 'print(1+1)'"}, 200, &res)
	if res.Stdout != "2\n" || res.ExitCode != 0 {
		t.Fatalf("python3: %+v", res)
	}
	s.json(t, "POST", "/sandboxes/"+sb.SandboxID+"/commands", api.ProcessConfig{Cmd: "cat /etc/debian_version; bash --version | head -1; git --version"}, 200, &res)
	if !strings.HasPrefix(res.Stdout, "12.") || !strings.Contains(res.Stdout, "GNU bash") || !strings.Contains(res.Stdout, "git version") {
		t.Fatalf("base image content: %+v", res)
	}

	resp, body = s.do(t, "PUT", "/sandboxes/"+sb.SandboxID+"/files?path=/work/dir/hello.txt", strings.NewReader("hello file"))
	if resp.StatusCode != 200 {
		t.Fatalf("write: %d %s", resp.StatusCode, body)
	}
	resp, body = s.do(t, "GET", "/sandboxes/"+sb.SandboxID+"/files?path=/work/dir/hello.txt", nil)
	if resp.StatusCode != 200 || string(body) != "hello file" {
		t.Fatalf("read: %d %q", resp.StatusCode, body)
	}
	var entries []api.EntryInfo
	s.json(t, "GET", "/sandboxes/"+sb.SandboxID+"/files/list?path=/work&depth=2", nil, 200, &entries)
	if len(entries) != 2 || entries[0].Path != "/work/dir" || !entries[0].IsDir || entries[1].Name != "hello.txt" || entries[1].Size != 10 {
		t.Fatalf("list: %+v", entries)
	}
	var e api.EntryInfo
	s.json(t, "POST", "/sandboxes/"+sb.SandboxID+"/files/mkdir?path=/root/new/deep", nil, 200, &e)
	s.json(t, "POST", "/sandboxes/"+sb.SandboxID+"/files/rename", api.RenameRequest{From: "/work/dir/hello.txt", To: "/root/new/deep/moved.txt"}, 200, &e)
	if e.Path != "/root/new/deep/moved.txt" || e.Size != 10 {
		t.Fatalf("rename: %+v", e)
	}
	s.json(t, "GET", "/sandboxes/"+sb.SandboxID+"/files/stat?path=/root/new/deep/moved.txt", nil, 200, &e)
	resp, _ = s.do(t, "DELETE", "/sandboxes/"+sb.SandboxID+"/files?path=/root/new", nil)
	if resp.StatusCode != 204 {
		t.Fatalf("remove: %d", resp.StatusCode)
	}
	resp, body = s.do(t, "GET", "/sandboxes/"+sb.SandboxID+"/files/stat?path=/root/new/deep/moved.txt", nil)
	wantError(t, resp, body, 404, "file_not_found")

	var list []api.Sandbox
	s.json(t, "GET", "/sandboxes", nil, 200, &list)
	if len(list) != 1 || list[0].SandboxID != sb.SandboxID {
		t.Fatalf("list: %+v", list)
	}
	s.json(t, "POST", "/sandboxes/"+sb.SandboxID+"/timeout", api.TimeoutRequest{Timeout: 600}, 204, nil)
	var got api.Sandbox
	s.json(t, "GET", "/sandboxes/"+sb.SandboxID, nil, 200, &got)
	if d := got.EndAt.Sub(sb.StartedAt).Seconds(); d < 600 {
		t.Fatalf("timeout not moved: endAt %s", got.EndAt)
	}
	resp, _ = s.do(t, "DELETE", "/sandboxes/"+sb.SandboxID, nil)
	if resp.StatusCode != 204 {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	resp, body = s.do(t, "GET", "/sandboxes/"+sb.SandboxID, nil)
	wantError(t, resp, body, 404, "sandbox_not_found")
}

func TestLargeFileRoundTrip(t *testing.T) {
	s := startCombined(t, nil)
	var sb api.Sandbox
	s.json(t, "POST", "/sandboxes", api.SandboxConfig{TemplateID: "busybox"}, 201, &sb)
	data := make([]byte, 64<<20)
	rand.Read(data)
	want := sha256.Sum256(data)
	resp, body := s.do(t, "PUT", "/sandboxes/"+sb.SandboxID+"/files?path=/tmp/big.bin", bytes.NewReader(data))
	if resp.StatusCode != 200 {
		t.Fatalf("upload: %d %s", resp.StatusCode, body)
	}
	var res api.ProcessResult
	s.json(t, "POST", "/sandboxes/"+sb.SandboxID+"/commands", api.ProcessConfig{Cmd: "sha256sum /tmp/big.bin"}, 200, &res)
	if !strings.HasPrefix(res.Stdout, fmt.Sprintf("%x", want)) {
		t.Fatalf("sha256 inside sandbox %q, want %x", res.Stdout, want)
	}
	resp, body = s.do(t, "GET", "/sandboxes/"+sb.SandboxID+"/files?path=/tmp/big.bin", nil)
	if resp.StatusCode != 200 || sha256.Sum256(body) != want || resp.ContentLength != int64(len(data)) {
		t.Fatalf("download: status %d, %d bytes, sha mismatch=%v", resp.StatusCode, len(body), sha256.Sum256(body) != want)
	}
	// A range request answers 206 with just those bytes.
	resp, body = s.do(t, "GET", "/sandboxes/"+sb.SandboxID+"/files?path=/tmp/big.bin", nil, "Range", "bytes=100-199")
	if resp.StatusCode != 206 || !bytes.Equal(body, data[100:200]) {
		t.Fatalf("range: %d, %d bytes", resp.StatusCode, len(body))
	}
}

func TestErrors(t *testing.T) {
	s := startCombined(t, func(c *Config) { c.MaxUpload = 1 << 20 })
	var sb api.Sandbox
	s.json(t, "POST", "/sandboxes", api.SandboxConfig{TemplateID: "busybox"}, 201, &sb)
	id := sb.SandboxID

	resp, body := s.do(t, "POST", "/sandboxes", strings.NewReader(`{"templateID":`))
	wantError(t, resp, body, 400, "invalid_argument")
	resp, body = s.do(t, "POST", "/sandboxes", strings.NewReader(`{"cpuCount": 64}`))
	wantError(t, resp, body, 400, "invalid_argument")
	resp, body = s.do(t, "POST", "/sandboxes", strings.NewReader(`{"templateID": "nope"}`))
	wantError(t, resp, body, 400, "template_not_found")
	// No registries by default: an image reference is not pulled.
	resp, body = s.do(t, "POST", "/sandboxes", strings.NewReader(`{"templateID": "python:3.12"}`))
	wantError(t, resp, body, 403, "registry_not_allowed")
	resp, body = s.do(t, "POST", "/sandboxes/"+id+"/commands", strings.NewReader(`not json`))
	wantError(t, resp, body, 400, "invalid_argument")
	resp, body = s.do(t, "POST", "/sandboxes/"+id+"/commands", strings.NewReader(`{"cmd": ""}`))
	wantError(t, resp, body, 400, "invalid_argument")
	resp, body = s.do(t, "POST", "/sandboxes/"+id+"/timeout", strings.NewReader(`{"timeout": 0}`))
	wantError(t, resp, body, 400, "invalid_argument")

	for _, r := range [][2]string{{"GET", "/sandboxes/nope"}, {"DELETE", "/sandboxes/nope"}, {"POST", "/sandboxes/nope/commands"}, {"GET", "/sandboxes/nope/files?path=/etc/passwd"}} {
		resp, body = s.do(t, r[0], r[1], strings.NewReader(`{"cmd":"true"}`))
		wantError(t, resp, body, 404, "sandbox_not_found")
	}
	resp, body = s.do(t, "GET", "/sandboxes/"+id+"/files?path=/no/such/file", nil)
	wantError(t, resp, body, 404, "file_not_found")
	resp, body = s.do(t, "GET", "/sandboxes/"+id+"/files?path=/tmp", nil)
	wantError(t, resp, body, 400, "is_a_directory")
	resp, body = s.do(t, "GET", "/sandboxes/"+id+"/files", nil)
	wantError(t, resp, body, 400, "invalid_argument")
	resp, body = s.do(t, "GET", "/no/such/route", nil)
	wantError(t, resp, body, 404, "")

	// Oversize JSON body (commands carry stdin, so the JSON limit is 16 MiB).
	big := `{"cmd":"true","stdin":"` + strings.Repeat("a", 17<<20) + `"}`
	resp, body = s.do(t, "POST", "/sandboxes/"+id+"/commands", strings.NewReader(big))
	wantError(t, resp, body, 413, "body_too_large")
	// Oversize upload, with a length and chunked; nothing is left half-written.
	resp, body = s.do(t, "PUT", "/sandboxes/"+id+"/files?path=/tmp/up", bytes.NewReader(make([]byte, 2<<20)))
	wantError(t, resp, body, 413, "body_too_large")
	resp, body = s.do(t, "PUT", "/sandboxes/"+id+"/files?path=/tmp/up", io.MultiReader(strings.NewReader("x"), bytes.NewReader(make([]byte, 2<<20))))
	wantError(t, resp, body, 413, "body_too_large")
	var res api.ProcessResult
	s.json(t, "POST", "/sandboxes/"+id+"/commands", api.ProcessConfig{Cmd: "ls -A /tmp | wc -l"}, 200, &res)
	if strings.TrimSpace(res.Stdout) != "0" {
		t.Fatalf("rejected uploads left files behind: %q", res.Stdout)
	}
}

func TestAPIKey(t *testing.T) {
	s := startCombined(t, func(c *Config) { c.APIKey = "secret-key" })
	for _, tc := range []struct {
		key    string
		status int
	}{{"", 401}, {"wrong", 403}, {"secret-key", 200}} {
		req, _ := http.NewRequest("GET", s.url+"/sandboxes", nil)
		if tc.key != "" {
			req.Header.Set("X-API-Key", tc.key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("key %q: status %d, want %d", tc.key, resp.StatusCode, tc.status)
		}
	}
	for _, path := range []string{"/metrics", "/sandboxes/x/commands"} {
		resp, err := http.Post(s.url+path, "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Errorf("%s without key: %d", path, resp.StatusCode)
		}
	}
	resp, err := http.Get(s.url + "/health")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("health must not need a key: %v %v", err, resp.StatusCode)
	}
}

func TestMetrics(t *testing.T) {
	s := startCombined(t, nil)
	var sb api.Sandbox
	s.json(t, "POST", "/sandboxes", api.SandboxConfig{TemplateID: "busybox"}, 201, &sb)
	s.json(t, "POST", "/sandboxes/"+sb.SandboxID+"/commands", api.ProcessConfig{Cmd: "true"}, 200, nil)
	s.json(t, "POST", "/sandboxes/"+sb.SandboxID+"/commands", api.ProcessConfig{Cmd: "exit 2"}, 200, nil)
	resp, body := s.do(t, "GET", "/metrics", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("metrics: %d", resp.StatusCode)
	}
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, "opensandbox_http_requests_total") {
			t.Log(l)
		}
	}
	for _, want := range []string{
		"opensandbox_sandboxes_active 1",
		`opensandbox_commands_total{exit_class="ok"} 1`,
		`opensandbox_commands_total{exit_class="nonzero"} 1`,
		`opensandbox_sandbox_create_duration_seconds_count{template="busybox"} 1`,
		"opensandbox_exec_duration_seconds_count 2",
		`opensandbox_http_requests_total{method="POST",route="/sandboxes/:id/commands",status="200"} 2`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
