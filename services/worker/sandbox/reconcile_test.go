package sandbox_test

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/shared/errs"
	"github.com/opensandbox/opensandbox/services/shared/events"
	"github.com/opensandbox/opensandbox/services/worker/internal/sandboxdb"
	"github.com/opensandbox/opensandbox/services/worker/runtime"
	"github.com/opensandbox/opensandbox/services/worker/sandbox"
	"github.com/opensandbox/opensandbox/services/worker/sandboxtest"
)

// A sandbox whose container dies under the worker (its agent killed, or
// stopped with SIGTERM, from outside: from inside, signals to the agent are
// refused, see TestSignalsToTheAgentFromInsideDoNotEndTheSandbox) is
// destroyed by the reconciler:
// it leaves the manager with an error event, the OnDestroy hook runs, its
// container is removed and its capacity is free again.
func TestDeadContainerIsReconciled(t *testing.T) {
	for _, tc := range []struct {
		name string
		kill func(t *testing.T, m *sandbox.Manager, id string)
	}{
		{"podman kill", func(t *testing.T, m *sandbox.Manager, id string) {
			if out, err := exec.Command("podman", "kill", "--signal", "KILL", "osb-"+id).CombinedOutput(); err != nil {
				t.Fatalf("podman kill: %v %s", err, out)
			}
		}},
		{"SIGTERM", func(t *testing.T, m *sandbox.Manager, id string) {
			if out, err := exec.Command("podman", "kill", "--signal", "TERM", "osb-"+id).CombinedOutput(); err != nil {
				t.Fatalf("podman kill: %v %s", err, out)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := sandboxtest.Runtime(t)
			cfg := sandboxtest.Config(t)
			cfg.Capacity = 1
			cfg.ReconcileInterval = 200 * time.Millisecond
			cfg.RetainEvents = true // the final event stays readable
			var mu sync.Mutex
			destroyed := map[string]string{}
			cfg.OnDestroy = func(_ context.Context, id, reason string) {
				mu.Lock()
				destroyed[id] = reason
				mu.Unlock()
			}
			m := sandboxtest.Manager(t, rt, cfg)
			ctx := context.Background()
			sb := mustCreate(t, m, api.SandboxConfig{})

			tc.kill(t, m, sb.SandboxID)
			start := time.Now()
			// The hook runs last, once the sandbox is fully gone.
			eventually(t, 10*time.Second, "OnDestroy called for the dead sandbox", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return destroyed[sb.SandboxID] != ""
			})
			t.Logf("reconciled %s after the kill", time.Since(start))
			if reason := destroyed[sb.SandboxID]; reason != events.TypeError {
				t.Fatalf("OnDestroy reason %q, want %q", reason, events.TypeError)
			}
			if _, err := m.Get(ctx, sb.SandboxID); !errors.Is(err, errs.ErrSandboxNotFound) {
				t.Fatalf("dead sandbox still in the manager: %v", err)
			}
			if _, err := rt.Inspect(ctx, "osb-"+sb.SandboxID); !errors.Is(err, runtime.ErrNotFound) {
				t.Fatalf("dead container not removed: %v", err)
			}
			last := lastEvent(t, filepath.Join(cfg.DataDir, "sandboxes", sb.SandboxID, "sandbox.db"))
			if last.Type != events.TypeError || !strings.Contains(last.Error, "stopped") {
				t.Fatalf("final event %+v, want an error saying the container stopped", last)
			}
			// The capacity it held is free again.
			mustCreate(t, m, api.SandboxConfig{})
		})
	}
}

// lastEvent returns the newest event recorded in a sandbox's database.
func lastEvent(t *testing.T, path string) events.Event {
	t.Helper()
	db, err := sandboxdb.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	evs, err := db.Unsynced(context.Background(), 1000)
	if err != nil || len(evs) == 0 {
		t.Fatalf("events: %v %v", evs, err)
	}
	ev, err := events.Unmarshal(evs[len(evs)-1].Payload)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// failingRemove is the real runtime whose Remove fails a given number of times.
type failingRemove struct {
	runtime.Runtime
	failures atomic.Int32
}

func (f *failingRemove) Remove(ctx context.Context, name string) error {
	if f.failures.Add(-1) >= 0 {
		return errors.New("injected removal failure")
	}
	return f.Runtime.Remove(ctx, name)
}

// A container whose removal failed when its sandbox was destroyed does not
// keep running: the reconciler removes it on a later pass.
func TestFailedRemovalIsRetried(t *testing.T) {
	rt := &failingRemove{Runtime: sandboxtest.Runtime(t)}
	cfg := sandboxtest.Config(t)
	cfg.ReconcileInterval = 200 * time.Millisecond
	m := sandboxtest.Manager(t, rt, cfg)
	ctx := context.Background()
	sb := mustCreate(t, m, api.SandboxConfig{})
	rt.failures.Store(1)
	if err := m.Kill(ctx, sb.SandboxID); err != nil {
		t.Fatal(err)
	}
	if c, err := rt.Inspect(ctx, "osb-"+sb.SandboxID); err != nil || !c.Running {
		t.Fatalf("the injected failure should have left the container running: %v %+v", err, c)
	}
	eventually(t, 10*time.Second, "container removed by the reconciler", func() bool {
		_, err := rt.Inspect(ctx, "osb-"+sb.SandboxID)
		return errors.Is(err, runtime.ErrNotFound)
	})
}

// A container of this worker that no sandbox owns — a create whose worker
// was killed after Podman got the request, finished by Podman after the
// restarted worker had looked — is removed by the reconciler; the worker's
// own sandboxes stay.
func TestOrphanContainerIsRemoved(t *testing.T) {
	rt := sandboxtest.Runtime(t)
	cfg := sandboxtest.Config(t)
	cfg.ReconcileInterval = 200 * time.Millisecond
	m := sandboxtest.Manager(t, rt, cfg)
	ctx := context.Background()
	sb := mustCreate(t, m, api.SandboxConfig{})
	orphan := "osb-orphan" + sandboxtest.RandomID()
	_, err := rt.Start(ctx, runtime.Spec{
		Name: orphan, Image: cfg.Templates["busybox"], Cmd: []string{"sleep", "600"},
		Labels: map[string]string{sandbox.LabelWorker: cfg.WorkerID, sandbox.LabelID: strings.TrimPrefix(orphan, "osb-")},
	})
	if err != nil && !strings.Contains(err.Error(), "no such container") {
		t.Fatal(err) // (the reconciler may remove it between create and start)
	}
	t.Cleanup(func() { rt.Remove(context.Background(), orphan) })
	sandboxtest.Eventually(t, 30*time.Second, "orphan container removed", func() bool {
		_, err := rt.Inspect(ctx, orphan)
		return errors.Is(err, runtime.ErrNotFound)
	})
	if res, err := m.Exec(ctx, sb.SandboxID, api.ProcessConfig{Cmd: "echo still here"}); err != nil || res.Stdout != "still here\n" {
		t.Fatalf("the worker's own sandbox after the sweep: %+v %v", res, err)
	}
}
