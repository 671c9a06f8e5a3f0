package sandbox_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/worker/runtime"
	"github.com/opensandbox/opensandbox/services/worker/sandbox"
	"github.com/opensandbox/opensandbox/services/worker/sandboxtest"
)

// The agent is PID 1: orphans that exit are reaped, never left as zombies.
func TestAgentReapsOrphans(t *testing.T) {
	m, _, _ := newManager(t)
	sb := mustCreate(t, m, api.SandboxConfig{})
	// The shell exits at once; its background children are orphaned to PID 1.
	run(t, m, sb.SandboxID, api.ProcessConfig{Cmd: "for i in 1 2 3 4 5; do sleep 0.1 & done; exit 0"})
	sandboxtest.Eventually(t, 5*time.Second, "orphans reaped", func() bool {
		out := run(t, m, sb.SandboxID, api.ProcessConfig{Cmd: "ps -o stat,args"}).Stdout
		return !strings.Contains(out, "sleep") && !strings.Contains(out, "\nZ")
	})
}

// SIGTERM to the sandbox (podman stop/kill) reaches the agent's children and
// the agent exits promptly.
func TestAgentForwardsSIGTERMAndExits(t *testing.T) {
	m, rt, cfg := newManager(t)
	ctx := context.Background()
	sb := mustCreate(t, m, api.SandboxConfig{})
	marker := filepath.Join(cfg.DataDir, "sandboxes", sb.SandboxID, "run", "got-term")
	// The run directory is the host directory mounted at /.osb/run.
	st, err := m.StartProcess(ctx, sb.SandboxID, api.ProcessConfig{
		Cmd: `trap 'echo term > /.osb/run/got-term; exit 0' TERM; echo ready; while :; do sleep 0.05; done`,
	})
	if err != nil {
		t.Fatal(err)
	}
	waitOutput(t, m, sb.SandboxID, st.PID, "ready") // the trap is in place
	start := time.Now()
	if out, err := exec.Command("podman", "kill", "--signal", "TERM", "osb-"+sb.SandboxID).CombinedOutput(); err != nil {
		t.Fatalf("podman kill: %v %s", err, out)
	}
	// The reconciler may remove the stopped container before we look.
	sandboxtest.Eventually(t, 10*time.Second, "sandbox stopped after SIGTERM", func() bool {
		c, err := rt.Inspect(ctx, "osb-"+sb.SandboxID)
		return errors.Is(err, runtime.ErrNotFound) || (err == nil && !c.Running)
	})
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("agent took %s to exit after SIGTERM", d)
	}
	b, err := os.ReadFile(marker)
	if err != nil || strings.TrimSpace(string(b)) != "term" {
		t.Fatalf("child did not get the forwarded SIGTERM: %q %v", b, err)
	}
}

// waitOutput follows a process's output until its stdout contains want.
func waitOutput(t *testing.T, m *sandbox.Manager, id string, pid int, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ps, err := m.ConnectProcess(ctx, id, pid)
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	var out strings.Builder
	for !strings.Contains(out.String(), want) {
		ev, err := ps.Next()
		if err != nil || ev.Type == api.EventExit || ev.Type == api.EventError {
			t.Fatalf("waiting for %q: %v %+v; stdout %q", want, err, ev, out.String())
		}
		if ev.Type == api.EventStdout {
			out.Write(ev.Data)
		}
	}
}
