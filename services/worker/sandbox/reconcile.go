package sandbox

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/events"
	"github.com/opensandbox/opensandbox/services/worker/internal/sandboxdb"
	"github.com/opensandbox/opensandbox/services/worker/runtime"
)

// reconcilePass bounds one pass of the reconciler.
const reconcilePass = time.Minute

// reconcileLoop reconciles every cfg.ReconcileInterval until Close.
func (m *Manager) reconcileLoop() {
	defer m.reconciler.Done()
	t := time.NewTicker(m.cfg.ReconcileInterval)
	defer t.Stop()
	var gc <-chan time.Time // image garbage collection, when on
	if m.cfg.ImageGCAfter > 0 {
		tick := time.NewTicker(m.cfg.imageGCEvery())
		defer tick.Stop()
		gc = tick.C
	}
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
			m.reconcile()
		case <-gc:
			ctx, cancel := context.WithTimeout(m.ctx, reconcilePass)
			m.CollectImages(ctx)
			cancel()
		}
	}
}

// reconcile compares the live sandboxes with this worker's containers. A
// sandbox whose container is missing or no longer running (its agent, PID 1,
// was killed from outside, or by the OOM killer) is destroyed
// with reason error, which frees its capacity and ends its session. Then
// the removals that failed earlier are tried again. A runtime that keeps
// a host firewall re-asserts it first.
func (m *Manager) reconcile() {
	// Destroys run to the end even when Close comes meanwhile (Close waits
	// for them); the listing stops with the manager.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(m.ctx), reconcilePass)
	defer cancel()
	if fk, ok := m.rt.(runtime.FirewallKeeper); ok {
		// The firewall logs its own failures and repairs.
		if err := fk.KeepFirewall(ctx); err != nil && !errors.Is(err, runtime.ErrFirewall) && m.ctx.Err() == nil {
			m.log.Warn("reconcile: sandbox network", "err", err)
		}
	}
	// The sandboxes are taken before the containers are listed, so that a
	// create or restore in flight, whose container may be newer than the
	// list, is not judged against it.
	m.mu.Lock()
	ids := make([]string, 0, len(m.boxes))
	dirs := make([]string, 0, len(m.boxes))
	for id, b := range m.boxes {
		ids = append(ids, id)
		dirs = append(dirs, b.dir)
	}
	m.mu.Unlock()
	m.measureDisks(dirs)
	lctx, lcancel := context.WithTimeout(m.ctx, reconcilePass)
	ctrs, err := m.rt.List(lctx, map[string]string{LabelWorker: m.cfg.WorkerID})
	lcancel()
	if err != nil {
		if m.ctx.Err() == nil {
			m.log.Warn("reconcile: list containers", "err", err)
		}
		m.retryRemovals(ctx)
		return
	}
	running := make(map[string]bool, len(ctrs))
	for _, c := range ctrs {
		if id := c.Labels[LabelID]; id != "" {
			running[id] = c.Running
		}
	}
	for _, id := range ids {
		up, found := running[id]
		if up {
			continue
		}
		detail := "the sandbox's container disappeared"
		if found {
			detail = "the sandbox's container stopped: its agent (PID 1) exited or was killed, e.g. out of memory"
		}
		m.log.Warn("sandbox container is not running; destroying the sandbox", "sandbox_id", id, "detail", detail)
		m.destroy(ctx, id, events.TypeError, detail)
	}
	if m.restored.Load() {
		m.removeOrphans(ctx, ctrs)
	}
	m.retryRemovals(ctx)
}

// removeOrphans removes this worker's containers that no sandbox owns: a
// create cut off by a crash of the worker (or by the Podman service going
// away) whose container Podman finished after the restart had looked. The
// known ids are taken after the listing, so every container in it whose
// create or restore is still running is known by then.
func (m *Manager) removeOrphans(ctx context.Context, ctrs []runtime.Container) {
	m.mu.Lock()
	known := make(map[string]bool, len(m.boxes)+len(m.pending))
	for id := range m.boxes {
		known[id] = true
	}
	for id := range m.pending {
		known[id] = true
	}
	m.mu.Unlock()
	for _, c := range ctrs {
		id := c.Labels[LabelID]
		if id == "" || known[id] {
			continue
		}
		m.log.Warn("removing a container no sandbox owns", "container", c.Name, "sandbox_id", id, "running", c.Running)
		m.metrics.OrphansRemoved.Inc()
		m.removeContainer(ctx, c.Name)
		dir := filepath.Join(m.cfg.DataDir, "sandboxes", id)
		if _, err := os.Stat(filepath.Join(dir, sandboxdb.RetiredMarker)); err == nil {
			continue // destroyed already; the publisher removes the directory
		}
		if _, err := os.Stat(dir); err == nil {
			m.lost(ctx, id, "its create was cut off (worker or Podman restart)")
		}
	}
}

// measureDisks sets the disk-used gauge from the sandboxes' own disks (one
// statfs each).
func (m *Manager) measureDisks(dirs []string) {
	var sum int64
	for _, d := range dirs {
		if used, _, ok := runtime.DiskUsage(d); ok {
			sum += used
		}
	}
	m.metrics.DiskUsedBytes.Set(float64(sum))
}

// removeContainer force-removes a container; one that cannot be removed now
// is remembered and retried by the reconciler.
func (m *Manager) removeContainer(ctx context.Context, name string) {
	if err := m.rt.Remove(ctx, name); err != nil {
		m.log.Error("remove sandbox container; the reconciler retries", "container", name, "err", err)
		m.mu.Lock()
		m.unremoved[name] = struct{}{}
		m.mu.Unlock()
	}
}

// retryRemovals tries again to remove the containers whose removal failed.
func (m *Manager) retryRemovals(ctx context.Context) {
	m.mu.Lock()
	names := make([]string, 0, len(m.unremoved))
	for name := range m.unremoved {
		names = append(names, name)
	}
	m.mu.Unlock()
	for _, name := range names {
		if err := m.rt.Remove(ctx, name); err != nil {
			m.log.Warn("remove sandbox container: still failing", "container", name, "err", err)
			continue
		}
		m.mu.Lock()
		delete(m.unremoved, name)
		m.mu.Unlock()
		m.log.Info("sandbox container removed on retry", "container", name)
	}
}
