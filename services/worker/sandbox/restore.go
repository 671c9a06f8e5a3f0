package sandbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/agentapi"
	"github.com/opensandbox/opensandbox/services/shared/events"
	"github.com/opensandbox/opensandbox/services/worker/internal/agentclient"
	"github.com/opensandbox/opensandbox/services/worker/internal/sandboxdb"
	"github.com/opensandbox/opensandbox/services/worker/runtime"
)

// Restore finds this worker's sandboxes from a previous run by their labels,
// re-arms their end times from their databases, and removes what cannot be
// restored: containers without state, stopped containers, expired sandboxes,
// and directories without a container. A sandbox lost that way gets an error
// event (an expired one a timeout event), so its session ends in the record.
func (m *Manager) Restore(ctx context.Context) error {
	ctrs, err := m.rt.List(ctx, map[string]string{LabelWorker: m.cfg.WorkerID})
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, c := range ctrs {
		id := c.Labels[LabelID]
		if id == "" {
			continue
		}
		seen[id] = true
		if err := m.restoreOne(ctx, id, c); err != nil {
			m.log.Warn("sandbox not restored; removing it", "sandbox_id", id, "err", err)
			m.removeContainer(ctx, c.Name)
			m.lost(ctx, id, "not restored after a worker restart: "+err.Error())
		}
	}
	dirs, _ := os.ReadDir(filepath.Join(m.cfg.DataDir, "sandboxes"))
	for _, d := range dirs {
		if seen[d.Name()] {
			continue
		}
		if _, err := os.Stat(filepath.Join(m.cfg.DataDir, "sandboxes", d.Name(), sandboxdb.RetiredMarker)); err == nil {
			continue // destroyed earlier; the publisher still has its events to send
		}
		m.lost(ctx, d.Name(), "its container disappeared while the worker was down")
	}
	m.restored.Store(true)
	m.log.Info("sandboxes restored", "count", m.Count())
	return nil
}

// lost records an error event for a sandbox that cannot be brought back and
// releases its directory.
func (m *Manager) lost(ctx context.Context, id, detail string) {
	dir := filepath.Join(m.cfg.DataDir, "sandboxes", id)
	m.metrics.Destroyed.WithLabelValues(events.TypeError).Inc()
	if db, err := sandboxdb.Open(filepath.Join(dir, "sandbox.db")); err == nil {
		var st state
		if found, _ := db.Meta(ctx, "state", &st); found {
			b := m.newBox(st.Info, st.OrgID, dir)
			b.db = db
			b.cancel()
			m.finish(ctx, b, events.TypeError, detail)
			return
		}
		db.Close()
	}
	m.release(dir)
	if m.cfg.OnDestroy != nil {
		m.cfg.OnDestroy(ctx, id, events.TypeError)
	}
}

func (m *Manager) restoreOne(ctx context.Context, id string, c runtime.Container) error {
	if !c.Running {
		return fmt.Errorf("container is not running")
	}
	dir := filepath.Join(m.cfg.DataDir, "sandboxes", id)
	dbPath := filepath.Join(dir, "sandbox.db")
	if _, err := os.Stat(dbPath); err != nil {
		return fmt.Errorf("no sandbox database: %w", err)
	}
	db, err := sandboxdb.Open(dbPath)
	if err != nil {
		return err
	}
	var st state
	found, err := db.Meta(ctx, "state", &st)
	if err != nil || !found {
		db.Close()
		return fmt.Errorf("no sandbox state (err=%v)", err)
	}
	_, err = m.rt.Inspect(ctx, c.Name) // the container is still there
	if err != nil {
		db.Close()
		return err
	}
	b := m.newBox(st.Info, st.OrgID, dir)
	b.db = db
	b.agent = agentclient.New(filepath.Join(dir, "run", agentapi.SocketName))
	if time.Now().After(b.info.EndAt) {
		b.cancel()
		// Its end came while the worker was down: it is not brought back.
		m.metrics.Destroyed.WithLabelValues(events.TypeTimeout).Inc()
		b.agent.Close()
		m.removeContainer(ctx, c.Name)
		m.finish(ctx, b, events.TypeTimeout, "")
		return nil
	}
	if err := m.waitAgent(ctx, b.agent); err != nil {
		b.cancel()
		b.agent.Close()
		db.Close()
		return err
	}
	m.mu.Lock()
	m.boxes[id] = b
	m.schedule(b)
	m.mu.Unlock()
	m.metrics.Active.Inc()
	m.metrics.DiskLimitBytes.Add(float64(int64(b.info.DiskMB) << 20))
	m.resumePTYs(ctx, b)
	return nil
}
