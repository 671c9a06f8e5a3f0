package sandbox_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/shared/errs"
	"github.com/opensandbox/opensandbox/services/worker/runtime"
	"github.com/opensandbox/opensandbox/services/worker/sandbox"
	"github.com/opensandbox/opensandbox/services/worker/sandboxtest"
	"github.com/prometheus/client_golang/prometheus"
)

func newManager(t *testing.T) (*sandbox.Manager, runtime.Runtime, sandbox.Config) {
	t.Helper()
	rt := sandboxtest.Runtime(t)
	cfg := sandboxtest.Config(t)
	return sandboxtest.Manager(t, rt, cfg), rt, cfg
}

func mustCreate(t *testing.T, m *sandbox.Manager, cfg api.SandboxConfig) api.Sandbox {
	t.Helper()
	sb, err := m.Create(context.Background(), cfg, sandbox.CreateOptions{})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return sb
}

func run(t *testing.T, m *sandbox.Manager, id string, p api.ProcessConfig) api.ProcessResult {
	t.Helper()
	res, err := m.Exec(context.Background(), id, p)
	if err != nil {
		t.Fatalf("exec %q: %v", p.Cmd, err)
	}
	return res
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	sandboxtest.Eventually(t, within, what, cond)
}

func TestLifecycle(t *testing.T) {
	m, rt, cfg := newManager(t)
	ctx := context.Background()
	sb := mustCreate(t, m, api.SandboxConfig{})
	if sb.Status != api.StatusRunning || sb.TemplateID != "busybox" || sb.CPUCount != 1 || sb.MemoryMB != 512 {
		t.Fatalf("unexpected sandbox: %+v", sb)
	}
	if got := sb.EndAt.Sub(sb.StartedAt); got != 300*time.Second {
		t.Fatalf("default timeout = %s, want 300s", got)
	}
	ctr, err := rt.Inspect(ctx, "osb-"+sb.SandboxID)
	if err != nil || !ctr.Running {
		t.Fatalf("container not running: %v %+v", err, ctr)
	}
	for k, want := range map[string]string{sandbox.LabelID: sb.SandboxID, sandbox.LabelTemplate: "busybox", sandbox.LabelTimeout: "300", sandbox.LabelWorker: cfg.WorkerID} {
		if ctr.Labels[k] != want {
			t.Errorf("label %s = %q, want %q", k, ctr.Labels[k], want)
		}
	}
	if ctr.Labels[sandbox.LabelCreated] == "" {
		t.Error("label opensandbox.created missing")
	}

	res := run(t, m, sb.SandboxID, api.ProcessConfig{Cmd: "echo hello; echo oops >&2; exit 3"})
	if res.ExitCode != 3 || res.Stdout != "hello\n" || res.Stderr != "oops\n" {
		t.Fatalf("exec = %+v", res)
	}
	if _, err := m.WriteFile(ctx, sb.SandboxID, "/tmp/a/b.txt", "0600", strings.NewReader("data"), 4); err != nil {
		t.Fatal(err)
	}
	e, err := m.Stat(ctx, sb.SandboxID, "/tmp/a/b.txt")
	if err != nil || e.Size != 4 || e.Mode != "0600" || e.IsDir {
		t.Fatalf("stat = %+v, %v", e, err)
	}
	if got := m.List(ctx, ""); len(got) != 1 || got[0].SandboxID != sb.SandboxID {
		t.Fatalf("list = %+v", got)
	}

	if err := m.Kill(ctx, sb.SandboxID); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Get(ctx, sb.SandboxID); !errors.Is(err, errs.ErrSandboxNotFound) {
		t.Fatalf("get after kill: %v", err)
	}
	if err := m.Kill(ctx, sb.SandboxID); !errors.Is(err, errs.ErrSandboxNotFound) {
		t.Fatalf("second kill: %v", err)
	}
	if _, err := rt.Inspect(ctx, "osb-"+sb.SandboxID); !errors.Is(err, runtime.ErrNotFound) {
		t.Fatalf("container still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "sandboxes", sb.SandboxID)); !os.IsNotExist(err) {
		t.Fatalf("sandbox directory still there: %v", err)
	}
}

func TestExecEnvsCwdAndExitCodes(t *testing.T) {
	m, _, _ := newManager(t)
	sb := mustCreate(t, m, api.SandboxConfig{Envs: map[string]string{"A": "from-create", "B": "kept"}})
	id := sb.SandboxID

	res := run(t, m, id, api.ProcessConfig{Cmd: "echo $A $B $C", Envs: map[string]string{"A": "from-command", "C": "new"}})
	if res.Stdout != "from-command kept new\n" {
		t.Errorf("envs: got %q", res.Stdout)
	}
	if res := run(t, m, id, api.ProcessConfig{Cmd: "echo $A"}); res.Stdout != "from-create\n" {
		t.Errorf("per-command envs leaked into the next command: %q", res.Stdout)
	}
	run(t, m, id, api.ProcessConfig{Cmd: "mkdir -p /work/dir"})
	if res := run(t, m, id, api.ProcessConfig{Cmd: "pwd", Cwd: "/work/dir"}); res.Stdout != "/work/dir\n" {
		t.Errorf("cwd: got %q", res.Stdout)
	}
	if res := run(t, m, id, api.ProcessConfig{Cmd: "pwd"}); res.Stdout != "/root\n" {
		t.Errorf("default cwd: got %q", res.Stdout)
	}
	if _, err := m.Exec(context.Background(), id, api.ProcessConfig{Cmd: "pwd", Cwd: "/does/not/exist"}); !isKind(err, errs.KindInvalid) {
		t.Errorf("missing cwd: %v", err)
	}
	// argv mode: no shell, so $A stays literal.
	if res := run(t, m, id, api.ProcessConfig{Cmd: "echo", Args: []string{"$A", "two words"}}); res.Stdout != "$A two words\n" {
		t.Errorf("argv: got %q", res.Stdout)
	}
	for _, code := range []int{1, 2, 42, 255} {
		if res := run(t, m, id, api.ProcessConfig{Cmd: fmt.Sprintf("exit %d", code)}); res.ExitCode != code {
			t.Errorf("exit %d: got %d", code, res.ExitCode)
		}
	}
	if res := run(t, m, id, api.ProcessConfig{Cmd: "no-such-binary", Args: []string{"x"}}); res.ExitCode != 127 {
		t.Errorf("missing binary: exit %d", res.ExitCode)
	}
	stdin := "line1\nline2\n"
	if res := run(t, m, id, api.ProcessConfig{Cmd: "cat", Args: []string{"-"}, Stdin: &stdin}); res.Stdout != stdin {
		t.Errorf("stdin: got %q", res.Stdout)
	}
	if _, err := m.Exec(context.Background(), id, api.ProcessConfig{}); !isKind(err, errs.KindInvalid) {
		t.Errorf("empty cmd: %v", err)
	}
}

func isKind(err error, k errs.Kind) bool {
	var e *errs.Error
	return errors.As(err, &e) && e.Kind == k
}

func TestExecTimeoutKillsProcessGroup(t *testing.T) {
	m, _, _ := newManager(t)
	sb := mustCreate(t, m, api.SandboxConfig{})
	start := time.Now()
	res := run(t, m, sb.SandboxID, api.ProcessConfig{Cmd: "sleep 300 & sleep 301; echo never", Timeout: 1})
	if res.ExitCode != 124 || !res.TimedOut || strings.Contains(res.Stdout, "never") {
		t.Fatalf("timeout result = %+v", res)
	}
	if time.Since(start) > 30*time.Second {
		t.Fatalf("timeout took %s", time.Since(start))
	}
	ps := run(t, m, sb.SandboxID, api.ProcessConfig{Cmd: "ps -o pid,args"})
	if strings.Contains(ps.Stdout, "sleep 30") {
		t.Fatalf("processes left after timeout:\n%s", ps.Stdout)
	}
}

func TestOutputIsCapped(t *testing.T) {
	rt := sandboxtest.Runtime(t)
	cfg := sandboxtest.Config(t)
	cfg.MaxOutput = 1000
	m := sandboxtest.Manager(t, rt, cfg)
	sb := mustCreate(t, m, api.SandboxConfig{})
	res := run(t, m, sb.SandboxID, api.ProcessConfig{Cmd: "head -c 5000 /dev/zero | tr '\\0' a; echo err >&2"})
	if len(res.Stdout) != 1000 || !res.StdoutTruncated || res.StderrTruncated || res.Stderr != "err\n" || res.ExitCode != 0 {
		t.Fatalf("capped output: len=%d truncated=%v stderr=%q exit=%d", len(res.Stdout), res.StdoutTruncated, res.Stderr, res.ExitCode)
	}
}

func TestValidation(t *testing.T) {
	m, _, _ := newManager(t)
	ctx := context.Background()
	cases := map[string]api.SandboxConfig{
		"cpu over max":     {CPUCount: 99},
		"negative cpu":     {CPUCount: -1},
		"memory over max":  {MemoryMB: 1 << 20},
		"memory too small": {MemoryMB: 1},
		"timeout over max": {Timeout: 10 * 24 * 3600},
		"negative timeout": {Timeout: -5},
		"unknown template": {TemplateID: "nope"},
		"bad env name":     {Envs: map[string]string{"A=B": "x"}},
		"bad image ref":    {TemplateID: "Upper/Case:x"},
	}
	for name, cfg := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := m.Create(ctx, cfg, sandbox.CreateOptions{}); !isKind(err, errs.KindInvalid) {
				t.Fatalf("want invalid argument, got %v", err)
			}
		})
	}
	if n := len(m.List(ctx, "")); n != 0 {
		t.Fatalf("%d sandboxes after refused creates", n)
	}
}

func TestCapacity(t *testing.T) {
	rt := sandboxtest.Runtime(t)
	cfg := sandboxtest.Config(t)
	cfg.Capacity = 1
	m := sandboxtest.Manager(t, rt, cfg)
	mustCreate(t, m, api.SandboxConfig{})
	_, err := m.Create(context.Background(), api.SandboxConfig{}, sandbox.CreateOptions{})
	var e *errs.Error
	if !errors.As(err, &e) || e.Code != "worker_full" || e.Kind != errs.KindUnavailable {
		t.Fatalf("want worker_full, got %v", err)
	}
}

func TestSandboxLimits(t *testing.T) {
	m, _, _ := newManager(t)
	sb := mustCreate(t, m, api.SandboxConfig{MemoryMB: 256, CPUCount: 2})
	out := run(t, m, sb.SandboxID, api.ProcessConfig{Cmd: `
		grep -E '^(CapEff|NoNewPrivs)' /proc/self/status
		echo net: $(ls /sys/class/net)
		cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null
		cat /sys/fs/cgroup/pids.max /sys/fs/cgroup/pids/pids.max 2>/dev/null
		cat /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null`}).Stdout
	for _, want := range []string{
		"CapEff:\t00000000000004fb", // CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID NET_BIND_SERVICE
		"NoNewPrivs:\t1",
		"net: lo\n",
		fmt.Sprint(256 << 20),
		"256\n",
		"200000",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("sandbox limits: %q missing from\n%s", want, out)
		}
	}
}

func TestNetworkEnabled(t *testing.T) {
	m, _, _ := newManager(t)
	sb := mustCreate(t, m, api.SandboxConfig{NetworkEnabled: true})
	out := run(t, m, sb.SandboxID, api.ProcessConfig{Cmd: "ls /sys/class/net"}).Stdout
	if !strings.Contains(out, "eth0") {
		t.Fatalf("networkEnabled sandbox has no eth0: %q", out)
	}
}

func TestConcurrentCreates(t *testing.T) {
	m, _, _ := newManager(t)
	const n = 20
	var wg sync.WaitGroup
	errc := make(chan error, n)
	ids := make(chan string, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sb, err := m.Create(context.Background(), api.SandboxConfig{}, sandbox.CreateOptions{})
			if err != nil {
				errc <- err
				return
			}
			res, err := m.Exec(context.Background(), sb.SandboxID, api.ProcessConfig{Cmd: "echo $HOSTNAME ok"})
			if err != nil || !strings.HasSuffix(res.Stdout, "ok\n") {
				errc <- fmt.Errorf("exec: %v %+v", err, res)
				return
			}
			ids <- sb.SandboxID
		}()
	}
	wg.Wait()
	close(errc)
	close(ids)
	for err := range errc {
		t.Error(err)
	}
	seen := map[string]bool{}
	for id := range ids {
		seen[id] = true
	}
	if len(seen) != n || len(m.List(context.Background(), "")) != n {
		t.Fatalf("got %d distinct sandboxes, list has %d; want %d", len(seen), len(m.List(context.Background(), "")), n)
	}
}

func TestDestroyedAtTimeout(t *testing.T) {
	m, rt, _ := newManager(t)
	ctx := context.Background()
	sb := mustCreate(t, m, api.SandboxConfig{Timeout: 2})
	keep := mustCreate(t, m, api.SandboxConfig{Timeout: 2})
	if _, err := m.SetTimeout(ctx, keep.SandboxID, time.Minute); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "sandbox destroyed at its timeout", func() bool {
		_, err := m.Get(ctx, sb.SandboxID)
		return errors.Is(err, errs.ErrSandboxNotFound)
	})
	eventually(t, 10*time.Second, "container of timed-out sandbox removed", func() bool {
		_, err := rt.Inspect(ctx, "osb-"+sb.SandboxID)
		return errors.Is(err, runtime.ErrNotFound)
	})
	if _, err := m.Get(ctx, keep.SandboxID); err != nil {
		t.Fatalf("sandbox with extended timeout is gone: %v", err)
	}
	if _, err := m.SetTimeout(ctx, keep.SandboxID, 0); !isKind(err, errs.KindInvalid) {
		t.Fatalf("zero timeout: %v", err)
	}
}

func TestRestartKeepsSandboxesAndTimers(t *testing.T) {
	rt := sandboxtest.Runtime(t)
	cfg := sandboxtest.Config(t)
	ctx := context.Background()
	m1 := sandboxtest.Manager(t, rt, cfg)
	long := mustCreate(t, m1, api.SandboxConfig{Metadata: map[string]string{"k": "v"}})
	short := mustCreate(t, m1, api.SandboxConfig{Timeout: 600})
	expired := mustCreate(t, m1, api.SandboxConfig{Timeout: 1})
	// Moving the end time must survive the restart too.
	if _, err := m1.SetTimeout(ctx, short.SandboxID, 4*time.Second); err != nil {
		t.Fatal(err)
	}
	run(t, m1, long.SandboxID, api.ProcessConfig{Cmd: "echo before > /tmp/state"})
	m1.Close() // the "crash": timers stop, containers stay
	time.Sleep(1500 * time.Millisecond)

	m2 := sandboxtest.Manager(t, rt, cfg)
	got, err := m2.Get(ctx, long.SandboxID)
	if err != nil {
		t.Fatalf("long-lived sandbox lost on restart: %v", err)
	}
	if got.Metadata["k"] != "v" || !got.EndAt.Equal(long.EndAt) {
		t.Fatalf("restored sandbox differs: %+v vs %+v", got, long)
	}
	if res := run(t, m2, long.SandboxID, api.ProcessConfig{Cmd: "cat /tmp/state"}); res.Stdout != "before\n" {
		t.Fatalf("state after restart: %q", res.Stdout)
	}
	if _, err := m2.Get(ctx, expired.SandboxID); !errors.Is(err, errs.ErrSandboxNotFound) {
		t.Fatalf("sandbox whose end passed while down was restored: %v", err)
	}
	if _, err := rt.Inspect(ctx, "osb-"+expired.SandboxID); !errors.Is(err, runtime.ErrNotFound) {
		t.Fatalf("container of expired sandbox kept: %v", err)
	}
	if _, err := m2.Get(ctx, short.SandboxID); err != nil {
		t.Fatalf("short sandbox lost on restart: %v", err)
	}
	eventually(t, 15*time.Second, "moved end time still holds after restart", func() bool {
		_, err := m2.Get(ctx, short.SandboxID)
		return errors.Is(err, errs.ErrSandboxNotFound)
	})
	if _, err := m2.Get(ctx, long.SandboxID); err != nil {
		t.Fatalf("long sandbox gone early: %v", err)
	}
}

func TestRestoreRemovesUnknownContainers(t *testing.T) {
	rt := sandboxtest.Runtime(t)
	cfg := sandboxtest.Config(t)
	ctx := context.Background()
	m1 := sandboxtest.Manager(t, rt, cfg)
	sb := mustCreate(t, m1, api.SandboxConfig{})
	m1.Close()
	// Its state is lost (e.g. the data disk was wiped): it cannot be trusted.
	os.RemoveAll(filepath.Join(cfg.DataDir, "sandboxes", sb.SandboxID))
	m2 := sandboxtest.Manager(t, rt, cfg)
	if len(m2.List(ctx, "")) != 0 {
		t.Fatal("sandbox without state was restored")
	}
	if _, err := rt.Inspect(ctx, "osb-"+sb.SandboxID); !errors.Is(err, runtime.ErrNotFound) {
		t.Fatalf("container without state kept: %v", err)
	}
}

// A timer that fired while SetTimeout moved the end (and so ran only after
// it) must not destroy the sandbox: the end is checked again.
func TestTimerThatFiredBeforeAnExtensionKeepsTheSandbox(t *testing.T) {
	m, _, _ := newManager(t)
	ctx := context.Background()
	sb := mustCreate(t, m, api.SandboxConfig{})
	if _, err := m.SetTimeout(ctx, sb.SandboxID, time.Minute); err != nil {
		t.Fatal(err)
	}
	m.Expire(sb.SandboxID) // the late timer callback
	if _, err := m.Get(ctx, sb.SandboxID); err != nil {
		t.Fatalf("sandbox whose end moved was destroyed by the old timer: %v", err)
	}
}

// Two managers on one data directory would fight over its sandboxes: the
// second is refused until the first closes.
func TestDataDirectoryIsLocked(t *testing.T) {
	rt := sandboxtest.Runtime(t)
	cfg := sandboxtest.Config(t)
	m1, err := sandbox.New(sandboxtest.Logger(t), rt, cfg, sandbox.NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sandbox.New(sandboxtest.Logger(t), rt, cfg, sandbox.NewMetrics(prometheus.NewRegistry())); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second manager on the same directory: %v", err)
	}
	m1.Close()
	m2, err := sandbox.New(sandboxtest.Logger(t), rt, cfg, sandbox.NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	m2.Close()
}
