package sandbox

import (
	"context"
	"encoding/json"
	"sync"

	"github.com/opensandbox/opensandbox/services/shared/agentapi"
	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/shared/errs"
	"github.com/opensandbox/opensandbox/services/worker/internal/agentclient"
)

// Watch is a file watch in a sandbox. Next returns events in the order the
// kernel reported them, and a keepalive event (api.EventKeepalive) after
// 15 s without any. Close removes the watch in the agent.
type Watch struct {
	m      *Manager
	b      *box
	s      *agentclient.Stream
	cancel context.CancelFunc
	once   sync.Once
}

// WatchDir watches path (with recursive, every directory below it too,
// including ones created later). It returns once the watch is in place;
// a missing path is a file_not_found error.
func (m *Manager) WatchDir(ctx context.Context, id, path string, recursive bool) (*Watch, error) {
	if path == "" {
		return nil, errs.Invalid("path is required")
	}
	b, err := m.get(id)
	if err != nil {
		return nil, err
	}
	wctx, cancel, err := m.openConn(ctx, b)
	if err != nil {
		return nil, err
	}
	s, err := b.agent.Watch(wctx, path, recursive)
	if err != nil {
		cancel()
		return nil, m.agentErr(id, err)
	}
	m.metrics.WatchesActive.Inc()
	return &Watch{m: m, b: b, s: s, cancel: cancel}, nil
}

// Next returns the next event. An error means the watch ended: the path
// was removed, the sandbox went away, or Close was called.
func (w *Watch) Next() (api.WatchEvent, error) {
	for {
		typ, payload, err := w.s.Next()
		if err != nil {
			if w.b.ctx.Err() != nil {
				return api.WatchEvent{}, errs.ErrSandboxNotFound
			}
			return api.WatchEvent{}, err
		}
		switch typ {
		case agentapi.FrameKeepalive:
			return api.WatchEvent{Type: api.EventKeepalive}, nil
		case agentapi.FrameEvent:
			var ev api.WatchEvent
			if err := json.Unmarshal(payload, &ev); err != nil {
				return api.WatchEvent{}, errs.Internal("decode watch event", err)
			}
			w.m.metrics.WatchEvents.Inc()
			return ev, nil
		}
	}
}

// Close removes the watch.
func (w *Watch) Close() {
	w.once.Do(func() {
		w.cancel()
		w.s.Close()
		w.m.metrics.WatchesActive.Dec()
	})
}
