package sandbox

import (
	"context"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/events"
	"github.com/opensandbox/opensandbox/services/worker/internal/sandboxdb"
)

func (m *Manager) notify(id string) {
	if m.cfg.OnEvent != nil {
		m.cfg.OnEvent(id)
	}
}

// addEvent records an event in the sandbox's database.
func (m *Manager) addEvent(ctx context.Context, b *box, ev events.Event) {
	b.dbMu.RLock()
	defer b.dbMu.RUnlock()
	if b.closed {
		return
	}
	m.fillEvent(b, &ev)
	if err := b.db.AddEvent(ctx, dbEvent(ev)); err != nil {
		m.log.Error("record sandbox event", "sandbox_id", b.info.SandboxID, "type", ev.Type, "err", err)
		return
	}
	m.notify(b.info.SandboxID)
}

func (m *Manager) fillEvent(b *box, ev *events.Event) {
	ev.ID = events.NewID()
	ev.SandboxID = b.info.SandboxID
	ev.OrgID = b.orgID
	ev.WorkerID = m.cfg.WorkerID
	ev.Region = m.cfg.Region
	ev.Time = time.Now().UTC()
	ev.Bound()
}

func dbEvent(ev events.Event) sandboxdb.Event {
	payload, _ := events.Marshal(ev) // cannot fail: no invalid UTF-8 reaches it (proto3 strings are checked)
	return sandboxdb.Event{ID: ev.ID, Type: ev.Type, Payload: payload, CreatedAt: ev.Time}
}
