package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/shared/httpx"
	"github.com/opensandbox/opensandbox/services/worker/httpapi"
	"github.com/opensandbox/opensandbox/services/worker/sandbox"
	"github.com/opensandbox/opensandbox/services/worker/sandboxtest"
)

// testAPI is the worker's routes on a real manager, served on a free port.
type testAPI struct {
	url string
	m   *sandbox.Manager
	id  string // a sandbox created for the test
}

func startAPI(t *testing.T, tune func(*sandbox.Config)) *testAPI {
	t.Helper()
	cfg := sandboxtest.Config(t)
	if tune != nil {
		tune(&cfg)
	}
	m := sandboxtest.Manager(t, sandboxtest.Runtime(t), cfg)
	app := httpx.NewApp(sandboxtest.Logger(t), nil)
	h := httpapi.New(m, 1<<30)
	h.MountLifecycle(app)
	h.MountData(app)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go app.Listener(ln)
	t.Cleanup(func() { app.ShutdownWithTimeout(5 * time.Second) })
	sb, err := m.Create(context.Background(), api.SandboxConfig{}, sandbox.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &testAPI{url: "http://" + ln.Addr().String(), m: m, id: sb.SandboxID}
}

// do sends a request and returns the answer with its whole body.
func (a *testAPI) do(ctx context.Context, method, path string, body io.Reader, hdr ...string) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, a.url+path, body)
	if err != nil {
		return nil, nil, err
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

func wantError(t *testing.T, resp *http.Response, body []byte, status int, code string) {
	t.Helper()
	var eb api.ErrorBody
	if resp.StatusCode != status || json.Unmarshal(body, &eb) != nil || eb.Code != code {
		t.Fatalf("got %d %s, want %d %s", resp.StatusCode, body, status, code)
	}
}

// run executes a command through the manager (not HTTP) and returns stdout.
func (a *testAPI) run(t *testing.T, cmd string) string {
	t.Helper()
	res, err := a.m.Exec(context.Background(), a.id, api.ProcessConfig{Cmd: cmd})
	if err != nil {
		t.Fatalf("exec %q: %v", cmd, err)
	}
	return res.Stdout
}

// exists reports whether path exists in the sandbox (file routes do not
// count against the command limit).
func (a *testAPI) exists(path string) bool {
	_, err := a.m.Stat(context.Background(), a.id, path)
	return err == nil
}

// A terminal's optional JSON body is read bounded: an endless chunked body
// is answered 413 after a bounded prefix, not read whole into memory.
func TestCreatePTYBodyIsBounded(t *testing.T) {
	a := startAPI(t, nil)
	for _, body := range []string{"", `{"cols":90,"rows":20}`} {
		resp, b, err := a.do(context.Background(), "POST", "/sandboxes/"+a.id+"/pty", strings.NewReader(body), "Content-Type", "application/json")
		if err != nil || resp.StatusCode != 201 {
			t.Fatalf("create pty with body %q: %v %v %s", body, err, resp, b)
		}
	}

	conn, err := net.Dial("tcp", strings.TrimPrefix(a.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const total = 256 << 20
	var sent atomic.Int64
	go func() {
		fmt.Fprintf(conn, "POST /sandboxes/%s/pty HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n", a.id)
		chunk := fmt.Appendf(nil, "%x\r\n%s\r\n", 64<<10, strings.Repeat(" ", 64<<10))
		for sent.Load() < total {
			if _, err := conn.Write(chunk); err != nil {
				return
			}
			sent.Add(64 << 10)
		}
		io.WriteString(conn, "0\r\n\r\n")
	}()
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to an endless body: %v", err)
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	wantError(t, resp, b, 413, "body_too_large")
	if n := sent.Load(); n >= total {
		t.Fatalf("the worker read the whole %d-byte body before answering", n)
	}
}

// A plain command whose client hangs up is killed: it neither runs on to
// its timeout nor holds its slot. At most MaxExecs run at once; more get
// 429 too_many_commands.
func TestPlainCommandLimitAndHangUp(t *testing.T) {
	a := startAPI(t, func(c *sandbox.Config) { c.MaxExecs = 2 })
	path := "/sandboxes/" + a.id + "/commands"
	ctx, hangUp := context.WithCancel(context.Background())
	defer hangUp()
	for i := range 2 {
		go a.do(ctx, "POST", path, strings.NewReader(fmt.Sprintf(`{"cmd":"touch /tmp/started-%d; sleep 602%d"}`, i, i)))
	}
	sandboxtest.Eventually(t, 10*time.Second, "both commands running", func() bool {
		return a.exists("/tmp/started-0") && a.exists("/tmp/started-1")
	})
	resp, b, err := a.do(context.Background(), "POST", path, strings.NewReader(`{"cmd":"echo third"}`))
	if err != nil {
		t.Fatal(err)
	}
	wantError(t, resp, b, 429, "too_many_commands")

	hangUp()
	sandboxtest.Eventually(t, 10*time.Second, "commands killed after their clients hung up", func() bool {
		res, err := a.m.Exec(context.Background(), a.id, api.ProcessConfig{Cmd: "ps -o args"})
		return err == nil && !strings.Contains(res.Stdout, "sleep 6020") && !strings.Contains(res.Stdout, "sleep 6021")
	})
	// Their slots are free again.
	resp, b, err = a.do(context.Background(), "POST", path, strings.NewReader(`{"cmd":"echo again"}`))
	var res api.ProcessResult
	if err != nil || resp.StatusCode != 200 || json.Unmarshal(b, &res) != nil || res.Stdout != "again\n" {
		t.Fatalf("command after the hang-up: %v %v %s", err, resp, b)
	}
}

// Range answers pass through as the agent gave them: 206 with
// Content-Range, 206 multipart/byteranges with its boundary, 416; a full
// disk is 507.
func TestFileRangesAndStorageErrors(t *testing.T) {
	a := startAPI(t, nil)
	if _, err := a.m.WriteFile(context.Background(), a.id, "/tmp/f", "", strings.NewReader("0123456789"), 10); err != nil {
		t.Fatal(err)
	}
	file := "/sandboxes/" + a.id + "/files?path=/tmp/f"
	ctx := context.Background()

	resp, b, err := a.do(ctx, "GET", file, nil, "Range", "bytes=2-4")
	if err != nil || resp.StatusCode != 206 || string(b) != "234" || resp.Header.Get("Content-Range") != "bytes 2-4/10" {
		t.Fatalf("one range: %v %v %q", err, resp, b)
	}

	resp, b, err = a.do(ctx, "GET", file, nil, "Range", "bytes=0-1,8-9")
	if err != nil || resp.StatusCode != 206 {
		t.Fatalf("two ranges: %v %v %q", err, resp, b)
	}
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/byteranges" || params["boundary"] == "" {
		t.Fatalf("two ranges: content type %q", resp.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(strings.NewReader(string(b)), params["boundary"])
	var parts []string
	for {
		p, err := mr.NextPart()
		if err != nil {
			break
		}
		pb, _ := io.ReadAll(p)
		parts = append(parts, p.Header.Get("Content-Range")+"="+string(pb))
	}
	if strings.Join(parts, ",") != "bytes 0-1/10=01,bytes 8-9/10=89" {
		t.Fatalf("two ranges: parts %q", parts)
	}

	resp, b, err = a.do(ctx, "GET", file, nil, "Range", "bytes=50-60")
	if err != nil {
		t.Fatal(err)
	}
	wantError(t, resp, b, 416, "range_not_satisfiable")

	// /dev/shm is a small tmpfs: once it is full, an upload there fails.
	a.run(t, "dd if=/dev/zero of=/dev/shm/fill bs=1M count=100 2>/dev/null; true")
	resp, b, err = a.do(ctx, "PUT", "/sandboxes/"+a.id+"/files?path=/dev/shm/more", strings.NewReader(strings.Repeat("x", 1<<20)))
	if err != nil {
		t.Fatal(err)
	}
	wantError(t, resp, b, 507, "no_space")
}
