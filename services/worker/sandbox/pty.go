package sandbox

import (
	"context"
	"regexp"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/agentapi"
	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/shared/errs"
	"github.com/opensandbox/opensandbox/services/shared/events"
	"github.com/opensandbox/opensandbox/services/worker/internal/agentclient"
	"github.com/opensandbox/opensandbox/services/worker/internal/sandboxdb"
)

// maxTermSize bounds cols and rows (the kernel keeps them in 16 bits).
const maxTermSize = 4096

var sessionIDRE = regexp.MustCompile(`^[0-9a-f]{1,64}$`)

// errPTYNotFound answers for unknown (and malformed) session ids.
var errPTYNotFound = errs.NotFound("pty_not_found", "no such terminal session")

// ptyAgent returns the agent of a sandbox after checking that sessionID
// is shaped like the agent's ids, so that it is safe in a URL path.
func (m *Manager) ptyAgent(id, sessionID string) (*agentclient.Client, error) {
	a, err := m.agentFor(id)
	if err != nil {
		return nil, err
	}
	if !sessionIDRE.MatchString(sessionID) {
		return nil, errPTYNotFound
	}
	return a, nil
}

// CreatePTY starts a shell on a new terminal in the sandbox: by default
// 80x24, /bin/bash where it exists else /bin/sh, TERM=xterm-256color. The
// session lives until its shell exits, KillPTY, or the sandbox ends, not
// merely while a client is attached. It is recorded in pty_sessions with a
// pty_start event; its end is recorded (pty_end) whenever the shell exits.
func (m *Manager) CreatePTY(ctx context.Context, id string, cfg api.PTYConfig) (api.PTYSession, error) {
	b, err := m.get(id)
	if err != nil {
		return api.PTYSession{}, err
	}
	if cfg.Cols < 0 || cfg.Rows < 0 || cfg.Cols > maxTermSize || cfg.Rows > maxTermSize {
		return api.PTYSession{}, errs.Invalid("cols and rows must be between 1 and %d", maxTermSize)
	}
	for k := range cfg.Envs {
		if !envKeyRE.MatchString(k) {
			return api.PTYSession{}, errs.Invalid("invalid environment variable name %q", k)
		}
	}
	info, err := b.agent.CreatePTY(ctx, agentapi.PTYRequest{Cols: cfg.Cols, Rows: cfg.Rows, Shell: cfg.Shell, Envs: cfg.Envs, Cwd: cfg.Cwd})
	if err != nil {
		return api.PTYSession{}, m.agentErr(id, err)
	}
	if !m.trackPTY(b, info.ID, info.StartedAt) {
		return api.PTYSession{}, errs.ErrSandboxNotFound
	}
	m.metrics.PTYSessions.Inc()
	m.recordPTYStart(ctx, b, info)
	go m.awaitPTYEnd(b, info.ID)
	m.log.Info("pty session started", "sandbox_id", id, "session_id", info.ID, "shell", info.Shell)
	return api.PTYSession{SessionID: info.ID, SandboxID: id}, nil
}

// PTYExists reports (as an error) whether a terminal session exists; a
// WebSocket handler checks it before upgrading.
func (m *Manager) PTYExists(ctx context.Context, id, sessionID string) error {
	a, err := m.ptyAgent(id, sessionID)
	if err != nil {
		return err
	}
	// Check for a free connection slot too, so that a full sandbox answers
	// 429 before the WebSocket handshake (AttachPTY takes the slot).
	_, release, err := m.openConnByID(ctx, id)
	if err != nil {
		return err
	}
	release()
	_, err = a.PTY(ctx, sessionID)
	return m.agentErrOrNil(id, err)
}

// ResizePTY changes a session's terminal size.
func (m *Manager) ResizePTY(ctx context.Context, id, sessionID string, cols, rows int) error {
	if cols < 1 || rows < 1 || cols > maxTermSize || rows > maxTermSize {
		return errs.Invalid("cols and rows must be between 1 and %d", maxTermSize)
	}
	a, err := m.ptyAgent(id, sessionID)
	if err != nil {
		return err
	}
	return m.agentErrOrNil(id, a.ResizePTY(ctx, sessionID, agentapi.Size{Cols: cols, Rows: rows}))
}

// KillPTY kills a session's shell and everything it started.
func (m *Manager) KillPTY(ctx context.Context, id, sessionID string) error {
	a, err := m.ptyAgent(id, sessionID)
	if err != nil {
		return err
	}
	return m.agentErrOrNil(id, a.DeletePTY(ctx, sessionID))
}

// trackPTY notes a session whose end is to be recorded.
func (m *Manager) trackPTY(b *box, id string, started time.Time) bool {
	if b.ctx.Err() != nil {
		return false
	}
	b.ptyMu.Lock()
	defer b.ptyMu.Unlock()
	if _, ok := b.ptys[id]; ok {
		return true
	}
	b.ptys[id] = started
	m.metrics.PTYActive.Inc()
	return true
}

// untrackPTY forgets a session; it reports whether it was tracked, so that
// exactly one caller records the end.
func (m *Manager) untrackPTY(b *box, id string) bool {
	b.ptyMu.Lock()
	defer b.ptyMu.Unlock()
	if _, ok := b.ptys[id]; !ok {
		return false
	}
	delete(b.ptys, id)
	m.metrics.PTYActive.Dec()
	return true
}

// awaitPTYEnd waits (a long poll on the agent) until the shell ends and
// records the end. When the sandbox or the manager goes first, destroy
// records the end, or the next Restore picks the session up again.
func (m *Manager) awaitPTYEnd(b *box, sessionID string) {
	info, err := b.agent.WaitPTY(b.ctx, sessionID)
	if err != nil {
		if b.ctx.Err() == nil {
			m.log.Warn("wait for pty session", "sandbox_id", b.info.SandboxID, "session_id", sessionID, "err", err)
			if m.untrackPTY(b, sessionID) {
				m.recordPTYEnd(b.ctx, b, agentapi.PTYInfo{ID: sessionID})
			}
		}
		return
	}
	if m.untrackPTY(b, sessionID) {
		m.recordPTYEnd(b.ctx, b, info)
	}
}

// endPTYs records the end of every open session of a sandbox about to be
// removed, with the byte counts the agent still knows.
func (m *Manager) endPTYs(ctx context.Context, b *box) {
	b.ptyMu.Lock()
	open := len(b.ptys)
	b.ptyMu.Unlock()
	if open == 0 {
		return
	}
	lctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	known := map[string]agentapi.PTYInfo{}
	if list, err := b.agent.PTYs(lctx); err == nil {
		for _, info := range list {
			known[info.ID] = info
		}
	}
	b.ptyMu.Lock()
	ids := make([]string, 0, len(b.ptys))
	for id := range b.ptys {
		ids = append(ids, id)
	}
	b.ptyMu.Unlock()
	for _, id := range ids {
		if m.untrackPTY(b, id) {
			info, ok := known[id]
			if !ok {
				info = agentapi.PTYInfo{ID: id}
			}
			m.recordPTYEnd(ctx, b, info)
		}
	}
}

// resumePTYs picks up the sessions of a restored sandbox: running ones are
// awaited again, and those that ended while the worker was down get their
// end recorded.
func (m *Manager) resumePTYs(ctx context.Context, b *box) {
	rows, err := m.ptyRows(ctx, b)
	if err != nil || len(rows) == 0 {
		return
	}
	list, err := b.agent.PTYs(ctx)
	if err != nil {
		m.log.Warn("list pty sessions of a restored sandbox", "sandbox_id", b.info.SandboxID, "err", err)
		return
	}
	live := map[string]agentapi.PTYInfo{}
	for _, info := range list {
		live[info.ID] = info
	}
	for _, row := range rows {
		if !row.EndedAt.IsZero() {
			continue
		}
		info, ok := live[row.ID]
		switch {
		case ok && info.Running:
			m.trackPTY(b, row.ID, row.StartedAt)
			go m.awaitPTYEnd(b, row.ID)
		case ok:
			m.recordPTYEnd(ctx, b, info)
		default:
			m.recordPTYEnd(ctx, b, agentapi.PTYInfo{ID: row.ID})
		}
	}
}

func (m *Manager) ptyRows(ctx context.Context, b *box) ([]sandboxdb.PTYSession, error) {
	b.dbMu.RLock()
	defer b.dbMu.RUnlock()
	if b.closed {
		return nil, errs.ErrSandboxNotFound
	}
	return b.db.PTYSessions(ctx)
}

// PTYRecord is one row of a sandbox's pty_sessions table.
type PTYRecord = sandboxdb.PTYSession

// PTYSessions returns a sandbox's terminal sessions as recorded.
func (m *Manager) PTYSessions(ctx context.Context, id string) ([]PTYRecord, error) {
	b, err := m.get(id)
	if err != nil {
		return nil, err
	}
	return m.ptyRows(ctx, b)
}

func (m *Manager) recordPTYStart(ctx context.Context, b *box, info agentapi.PTYInfo) {
	ev := events.Event{Type: events.TypePTYStart, PTY: &events.PTYData{SessionID: info.ID, StartedAt: info.StartedAt}}
	b.dbMu.RLock()
	defer b.dbMu.RUnlock()
	if b.closed {
		return
	}
	m.fillEvent(b, &ev)
	if err := b.db.StartPTY(context.WithoutCancel(ctx), sandboxdb.PTYSession{ID: info.ID, StartedAt: info.StartedAt}, dbEvent(ev)); err != nil {
		m.log.Error("record pty start", "sandbox_id", b.info.SandboxID, "session_id", info.ID, "err", err)
	}
}

// recordPTYEnd writes the end of a session; without an end time from the
// agent (the sandbox is going away) the end is now.
func (m *Manager) recordPTYEnd(ctx context.Context, b *box, info agentapi.PTYInfo) {
	end := time.Now().UTC()
	if info.EndedAt != nil {
		end = *info.EndedAt
	}
	ev := events.Event{Type: events.TypePTYEnd, PTY: &events.PTYData{
		SessionID: info.ID, StartedAt: info.StartedAt, EndedAt: &end, BytesIn: info.BytesIn, BytesOut: info.BytesOut,
	}}
	b.dbMu.RLock()
	defer b.dbMu.RUnlock()
	if b.closed {
		return
	}
	m.fillEvent(b, &ev)
	row := sandboxdb.PTYSession{ID: info.ID, EndedAt: end, BytesIn: info.BytesIn, BytesOut: info.BytesOut}
	if _, err := b.db.EndPTY(context.WithoutCancel(ctx), row, dbEvent(ev)); err != nil {
		m.log.Error("record pty end", "sandbox_id", b.info.SandboxID, "session_id", info.ID, "err", err)
		return
	}
	m.log.Info("pty session ended", "sandbox_id", b.info.SandboxID, "session_id", info.ID, "bytes_in", info.BytesIn, "bytes_out", info.BytesOut)
}
