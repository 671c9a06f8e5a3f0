package sandbox_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/api"
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
	if _, err := m.StartProcess(ctx, sb.SandboxID, api.ProcessConfig{
		Cmd: `trap 'echo term > /.osb/run/got-term; exit 0' TERM; echo ready; while :; do sleep 0.05; done`,
	}); err != nil {
		t.Fatal(err)
	}
	sandboxtest.Eventually(t, 5*time.Second, "process running", func() bool {
		ps, _ := m.Processes(ctx, sb.SandboxID)
		return len(ps) == 1 && ps[0].Running
	})
	time.Sleep(200 * time.Millisecond) // let the shell install its trap
	start := time.Now()
	if out, err := exec.Command("podman", "kill", "--signal", "TERM", "osb-"+sb.SandboxID).CombinedOutput(); err != nil {
		t.Fatalf("podman kill: %v %s", err, out)
	}
	sandboxtest.Eventually(t, 10*time.Second, "sandbox stopped after SIGTERM", func() bool {
		c, err := rt.Inspect(ctx, "osb-"+sb.SandboxID)
		return err == nil && !c.Running
	})
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("agent took %s to exit after SIGTERM", d)
	}
	b, err := os.ReadFile(marker)
	if err != nil || strings.TrimSpace(string(b)) != "term" {
		t.Fatalf("child did not get the forwarded SIGTERM: %q %v", b, err)
	}
}
