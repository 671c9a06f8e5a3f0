package sandbox

import (
	"context"
	"encoding/json"
	"io"
	"sync"

	"github.com/opensandbox/opensandbox/services/shared/agentapi"
	"github.com/opensandbox/opensandbox/services/shared/errs"
)

// PTYConn is one client's attachment to a terminal session. Read returns
// terminal output, the recent scrollback (up to 64 KiB) first; it returns
// io.EOF once the shell has exited, and then ExitCode is valid. Write sends
// keystrokes. Close detaches: the shell keeps running. A newer AttachPTY on
// the same session replaces this one, whose Read then fails.
//
// Read may run concurrently with Write and Resize.
type PTYConn struct {
	m    *Manager
	rw   io.ReadWriteCloser
	fr   *agentapi.FrameReader
	stop context.CancelFunc

	rest     []byte // unread part of the last output frame
	exitCode int
	exited   bool

	wmu       sync.Mutex // frames from Write and Resize do not interleave
	closeOnce sync.Once
}

// AttachPTY attaches to a running (or recently ended) terminal session.
func (m *Manager) AttachPTY(ctx context.Context, id, sessionID string) (*PTYConn, error) {
	b, err := m.get(id)
	if err != nil {
		return nil, err
	}
	if !sessionIDRE.MatchString(sessionID) {
		return nil, errPTYNotFound
	}
	actx, cancel, err := m.openConn(ctx, b)
	if err != nil {
		return nil, err
	}
	rw, err := b.agent.AttachPTY(actx, sessionID)
	if err != nil {
		cancel()
		return nil, m.agentErr(id, err)
	}
	return &PTYConn{m: m, rw: rw, fr: agentapi.NewFrameReader(rw), stop: cancel}, nil
}

// Read reads terminal output.
func (c *PTYConn) Read(p []byte) (int, error) {
	for len(c.rest) == 0 {
		if c.exited {
			return 0, io.EOF
		}
		typ, payload, err := c.fr.Next()
		if err != nil {
			return 0, errs.Unavailable("pty_detached", "terminal connection closed").WithCause(err)
		}
		switch typ {
		case agentapi.FrameData:
			c.rest = payload
			c.m.metrics.PTYBytes.WithLabelValues("out").Add(float64(len(payload)))
		case agentapi.FrameExit:
			var ex agentapi.Exit
			json.Unmarshal(payload, &ex)
			c.exitCode, c.exited = ex.ExitCode, true
		}
	}
	n := copy(p, c.rest)
	c.rest = c.rest[n:]
	return n, nil
}

// ExitCode returns the shell's exit code once Read has returned io.EOF.
func (c *PTYConn) ExitCode() (code int, exited bool) { return c.exitCode, c.exited }

// Write sends keystrokes (any bytes) to the shell.
func (c *PTYConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	for off := 0; off < len(p); {
		n := min(len(p)-off, agentapi.MaxFramePayload)
		if err := agentapi.WriteFrame(c.rw, agentapi.FrameData, p[off:off+n]); err != nil {
			return off, errs.Unavailable("pty_detached", "terminal connection closed").WithCause(err)
		}
		off += n
	}
	c.m.metrics.PTYBytes.WithLabelValues("in").Add(float64(len(p)))
	return len(p), nil
}

// Resize changes the terminal size.
func (c *PTYConn) Resize(cols, rows int) error {
	if cols < 1 || rows < 1 || cols > maxTermSize || rows > maxTermSize {
		return errs.Invalid("cols and rows must be between 1 and %d", maxTermSize)
	}
	b, _ := json.Marshal(agentapi.Size{Cols: cols, Rows: rows})
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := agentapi.WriteFrame(c.rw, agentapi.FrameResize, b); err != nil {
		return errs.Unavailable("pty_detached", "terminal connection closed").WithCause(err)
	}
	return nil
}

// Close detaches from the session. It also ends a Read or Write in progress.
func (c *PTYConn) Close() error {
	c.closeOnce.Do(func() {
		c.stop()
		c.rw.Close()
	})
	return nil
}
