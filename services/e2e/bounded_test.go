package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	osb "github.com/opensandbox/opensandbox/sdks/go"
	"github.com/opensandbox/opensandbox/services/e2e/load"
	"github.com/opensandbox/opensandbox/services/e2e/serverproc"
)

// maxOutput is the server's default cap per output stream of a command.
const maxOutput = 10 << 20

// rssWatch samples a server's resident memory until stopped and keeps the peak.
func rssWatch(t *testing.T, srv *serverproc.Server) (peak func() int64) {
	var max atomic.Int64
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			if rss, err := srv.RSS(); err == nil && rss > max.Load() {
				max.Store(rss)
			}
			select {
			case <-done:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	return func() int64 { close(done); <-stopped; return max.Load() }
}

func newSandbox(t *testing.T, c *osb.Client, template string) *osb.Sandbox {
	t.Helper()
	sbx, err := c.Create(context.Background(), osb.CreateOptions{Template: template, Timeout: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sbx.Kill(context.Background()) })
	return sbx
}

func mustRun(t *testing.T, sbx *osb.Sandbox, cmd string) *osb.CommandResult {
	t.Helper()
	res, err := sbx.Commands().Run(context.Background(), cmd, osb.RunOptions{})
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	return res
}

// Sixteen commands at once in one sandbox, each printing 50 MB of NUL bytes
// (which JSON escapes six-fold): every answer carries the cap and the
// truncation flag, the worker's memory stays bounded, and the sandbox works
// afterwards.
func TestHugeOutputsKeepTheWorkerBounded(t *testing.T) {
	srv := startServer(t)
	c := load.NewClient(srv.URL, srv.APIKey, 32)
	sbx := newSandbox(t, c, "busybox")
	base, _ := srv.RSS()
	peak := rssWatch(t, srv)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := sbx.Commands().Run(context.Background(), "head -c 50000000 /dev/zero", osb.RunOptions{})
			switch {
			case err != nil:
				errs <- err
			case len(res.Stdout) != maxOutput || !res.StdoutTruncated || strings.Trim(res.Stdout, "\x00") != "" || res.ExitCode != 0:
				errs <- fmt.Errorf("answer: %d bytes of stdout, truncated %v, exit %d", len(res.Stdout), res.StdoutTruncated, res.ExitCode)
			}
		}()
	}
	wg.Wait()
	close(errs)
	top := peak()
	for err := range errs {
		t.Error(err)
	}
	t.Logf("server RSS %d MiB before, peak %d MiB during 16 × 50 MB of output", base>>20, top>>20)
	if top > 300<<20 {
		t.Errorf("server RSS peaked at %d MiB, over the 300 MiB bound", top>>20)
	}
	if res := mustRun(t, sbx, "echo alive"); res.Stdout != "alive\n" {
		t.Fatalf("after the outputs: %+v", res)
	}
}

// The run the issue measured: 16 commands each printing 10 MB to stdout and
// 10 MB to stderr in a 512 MB sandbox killed the agent (it held all of it)
// and the sandbox with it. Now every command gets its whole output and the
// sandbox lives on.
func TestAgentSurvivesSixteenLargeOutputs(t *testing.T) {
	srv := startServer(t)
	c := load.NewClient(srv.URL, srv.APIKey, 32)
	sbx := newSandbox(t, c, "busybox")
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Printable bytes: the agent holds them as it would NULs, and
			// the client parses a sixth of the JSON.
			res, err := sbx.Commands().Run(context.Background(), "yes abcdefg | head -c 10000000; yes abcdefg | head -c 10000000 >&2", osb.RunOptions{})
			switch {
			case err != nil:
				errs <- err
			case len(res.Stdout) != 10_000_000 || len(res.Stderr) != 10_000_000 || res.StdoutTruncated || res.ExitCode != 0:
				errs <- fmt.Errorf("answer: %d + %d bytes, truncated %v, exit %d", len(res.Stdout), len(res.Stderr), res.StdoutTruncated, res.ExitCode)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if res := mustRun(t, sbx, "echo alive"); res.Stdout != "alive\n" {
		t.Fatalf("after the outputs: %+v", res)
	}
}

// A command that allocates past the sandbox's memory is the one the kernel
// kills; the answer says so, and the agent and sandbox live on.
func TestMemoryBombKillsOnlyTheCommand(t *testing.T) {
	srv := startServer(t)
	c := load.NewClient(srv.URL, srv.APIKey, 4)
	sbx := newSandbox(t, c, "busybox")
	// The kernel picks what the agent starts before the agent.
	if res := mustRun(t, sbx, "cat /proc/1/oom_score_adj /proc/self/oom_score_adj"); res.Stdout != "0\n1000\n" {
		t.Fatalf("OOM scores of the agent and of a command: %q, want 0 and 1000", res.Stdout)
	}
	res := mustRun(t, sbx, "dd if=/dev/zero of=/dev/null bs=700M count=1")
	if res.ExitCode != 137 || !res.OOMKilled {
		t.Fatalf("memory bomb: exit %d, oomKilled %v, stderr %q", res.ExitCode, res.OOMKilled, res.Stderr)
	}
	if res := mustRun(t, sbx, "echo alive"); res.Stdout != "alive\n" {
		t.Fatalf("after the bomb: %+v", res)
	}
	// Control: the same command within the memory is no OOM kill.
	if res := mustRun(t, sbx, "dd if=/dev/zero of=/dev/null bs=10M count=1"); res.ExitCode != 0 || res.OOMKilled {
		t.Fatalf("small dd: %+v", res)
	}
}

// A fork bomb fills its own sandbox's PID limit and no more: another
// sandbox and the server keep working while it runs, and it ends with its
// command's timeout.
func TestForkBombIsContained(t *testing.T) {
	srv := startServer(t)
	c := load.NewClient(srv.URL, srv.APIKey, 8)
	bomb := newSandbox(t, c, "busybox")
	other := newSandbox(t, c, "busybox")
	done := make(chan *osb.CommandResult, 1)
	go func() {
		res, _ := bomb.Commands().Run(context.Background(), "b() { b | b & }; b; sleep 100", osb.RunOptions{Timeout: 8 * time.Second})
		done <- res
	}()
	time.Sleep(2 * time.Second) // let it fill the sandbox's PID limit
	for range 5 {
		if res := mustRun(t, other, "echo fine"); res.Stdout != "fine\n" {
			t.Fatalf("other sandbox during the bomb: %+v", res)
		}
	}
	if resp, err := http.Get(srv.URL + "/health"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("server health during the bomb: %v", err)
	}
	if res := <-done; res == nil || !res.TimedOut {
		t.Fatalf("bomb command: %+v, want killed by its timeout", res)
	}
	// Its process group is gone with the timeout; the sandbox works again.
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := bomb.Commands().Run(context.Background(), "echo back", osb.RunOptions{})
		if err == nil && res.Stdout == "back\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bomb sandbox did not recover: %+v %v", res, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// api calls the server with the test's API key.
func api(t *testing.T, srv *serverproc.Server, ctx context.Context, method, path string, body any) *http.Response {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequestWithContext(ctx, method, srv.URL+path, r)
	req.Header.Set("X-API-Key", srv.APIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// Reading a device that never ends stops at the cap; the 65th stream held
// open on one sandbox is refused with 429 while the 64 others live on, and
// a slot freed is a slot usable again.
func TestEndlessReadsAndStreamFloodsAreBounded(t *testing.T) {
	srv := startServer(t)
	c := load.NewClient(srv.URL, srv.APIKey, 8)
	sbx := newSandbox(t, c, "busybox")
	ctx := context.Background()
	resp := api(t, srv, ctx, "GET", "/sandboxes/"+sbx.ID()+"/files?path=/dev/zero", nil)
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || n != maxOutput {
		t.Fatalf("/dev/zero: status %d, %d bytes; want 200 and %d", resp.StatusCode, n, maxOutput)
	}

	h, err := sbx.Commands().Start(ctx, "sleep 600", osb.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	streamPath := fmt.Sprintf("/sandboxes/%s/processes/%d/stream", sbx.ID(), h.PID)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var open []*http.Response
	defer func() {
		for _, r := range open {
			r.Body.Close()
		}
	}()
	for i := range 64 {
		r := api(t, srv, sctx, "GET", streamPath, nil)
		if r.StatusCode != 200 {
			b, _ := io.ReadAll(r.Body)
			t.Fatalf("stream %d: %d %s", i+1, r.StatusCode, b)
		}
		open = append(open, r)
	}
	r := api(t, srv, ctx, "GET", streamPath, nil)
	b, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(b), "too_many_connections") {
		t.Fatalf("65th stream: %d %s, want 429 too_many_connections", r.StatusCode, b)
	}
	// Another sandbox is not affected by this one's streams.
	other := newSandbox(t, c, "busybox")
	if res := mustRun(t, other, "echo fine"); res.Stdout != "fine\n" {
		t.Fatalf("other sandbox: %+v", res)
	}
	// A slot freed (the server notices the hang-up) is usable again.
	open[0].Body.Close()
	open = open[1:]
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := api(t, srv, sctx, "GET", streamPath, nil)
		if r.StatusCode == 200 {
			open = append(open, r)
			break
		}
		r.Body.Close()
		if time.Now().After(deadline) {
			t.Fatalf("no slot after closing a stream: %d", r.StatusCode)
		}
		time.Sleep(100 * time.Millisecond)
	}
	h.Kill(ctx)
}
