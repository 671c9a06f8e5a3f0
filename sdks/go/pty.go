package opensandbox

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/coder/websocket"
)

// PTY opens interactive terminals in a sandbox. Get it with Sandbox.PTY.
type PTY struct{ sbx *Sandbox }

// PTYOptions configures a terminal. Zero values take the server's defaults:
// 80×24, /bin/bash where it exists else /bin/sh, TERM=xterm-256color.
type PTYOptions struct {
	Cols, Rows int
	Shell      string
	Envs       map[string]string
	Cwd        string
	// OnData receives the terminal's output, on the handle's goroutine.
	OnData func(data []byte)
}

// Create opens a terminal of cols×rows running the default shell; its output
// goes to onData.
func (p *PTY) Create(ctx context.Context, cols, rows int, onData func(data []byte)) (*PTYHandle, error) {
	return p.CreateWithOptions(ctx, PTYOptions{Cols: cols, Rows: rows, OnData: onData})
}

// CreateWithOptions opens a terminal.
func (p *PTY) CreateWithOptions(ctx context.Context, opts PTYOptions) (*PTYHandle, error) {
	body := struct {
		Cols  int               `json:"cols,omitempty"`
		Rows  int               `json:"rows,omitempty"`
		Shell string            `json:"shell,omitempty"`
		Envs  map[string]string `json:"envs,omitempty"`
		Cwd   string            `json:"cwd,omitempty"`
	}{opts.Cols, opts.Rows, opts.Shell, opts.Envs, opts.Cwd}
	var ans struct {
		SessionID string `json:"sessionID"`
	}
	if err := p.sbx.dataJSON(ctx, http.MethodPost, "/pty", nil, body, &ans); err != nil {
		return nil, err
	}
	if ans.SessionID == "" {
		return nil, &Error{Op: "create pty", Code: CodeUnexpectedAnswer, Message: "the server answered no sessionID"}
	}
	h, err := p.Connect(ctx, ans.SessionID, opts.OnData)
	if err != nil {
		// Do not leave a shell behind that nobody can reach.
		_ = p.sbx.dataJSON(context.WithoutCancel(ctx), http.MethodDelete, "/pty/"+url.PathEscape(ans.SessionID), nil, nil, nil)
		return nil, err
	}
	return h, nil
}

// Connect attaches to an existing terminal session; onData first receives
// its recent output (scrollback), then live output. A new connection
// replaces an older one of the same session.
func (p *PTY) Connect(ctx context.Context, sessionID string, onData func(data []byte)) (*PTYHandle, error) {
	ep, err := p.sbx.dataEndpoint(ctx)
	if err != nil {
		return nil, err
	}
	rest := "/pty/" + url.PathEscape(sessionID)
	wsURL := ep.base + p.sbx.path(rest)
	switch {
	case strings.HasPrefix(wsURL, "https://"):
		wsURL = "wss://" + strings.TrimPrefix(wsURL, "https://")
	case strings.HasPrefix(wsURL, "http://"):
		wsURL = "ws://" + strings.TrimPrefix(wsURL, "http://")
	}
	hdr := http.Header{"User-Agent": {"opensandbox-go/" + Version}}
	ep.authorize(hdr)
	opts := &websocket.DialOptions{HTTPClient: p.sbx.client.http, HTTPHeader: hdr}
	if cred := ep.credential(); cred != "" {
		opts.Subprotocols = []string{"bearer." + cred}
	}
	op := "GET " + p.sbx.path(rest)
	conn, resp, err := websocket.Dial(ctx, wsURL, opts)
	if err != nil {
		if resp != nil && resp.StatusCode >= 400 {
			return nil, errorFromResponse(op, resp)
		}
		return nil, transportError(op, err)
	}
	conn.SetReadLimit(4 << 20) // scrollback arrives in large frames
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	h := &PTYHandle{SessionID: sessionID, sbx: p.sbx, conn: conn, cancel: cancel, done: make(chan struct{}), onData: onData}
	go h.read(rctx)
	return h, nil
}

// PTYHandle is a connected terminal session.
type PTYHandle struct {
	SessionID string

	sbx    *Sandbox
	conn   *websocket.Conn
	cancel context.CancelFunc
	onData func([]byte)

	done     chan struct{}
	exitCode int
	exited   bool
	err      error
	closing  sync.Once
}

// ptyControl is a JSON text frame.
type ptyControl struct {
	Type     string `json:"type"`
	Cols     int    `json:"cols,omitempty"`
	Rows     int    `json:"rows,omitempty"`
	ExitCode int    `json:"exitCode"`
}

func (h *PTYHandle) read(ctx context.Context) {
	defer close(h.done)
	defer h.cancel()
	for {
		typ, data, err := h.conn.Read(ctx)
		if err != nil {
			if !h.exited {
				if ctx.Err() != nil {
					h.err = &Error{Op: "pty", Code: CodeTransport, Message: "the terminal connection was closed", Err: context.Canceled}
				} else {
					h.err = &Error{Op: "pty", Code: CodeStream, Message: "the terminal connection ended before the shell exited", Err: err}
				}
			}
			return
		}
		switch typ {
		case websocket.MessageBinary:
			if h.onData != nil {
				h.onData(data)
			}
		case websocket.MessageText:
			var c ptyControl
			if json.Unmarshal(data, &c) == nil && c.Type == "exit" {
				h.exitCode, h.exited = c.ExitCode, true
			}
		}
	}
}

// Send writes bytes to the terminal as if typed.
func (h *PTYHandle) Send(ctx context.Context, data []byte) error {
	if err := h.conn.Write(ctx, websocket.MessageBinary, data); err != nil {
		return h.writeError(err)
	}
	return nil
}

// Resize changes the terminal's size; the shell gets SIGWINCH.
func (h *PTYHandle) Resize(ctx context.Context, cols, rows int) error {
	if cols <= 0 || rows <= 0 {
		return &Error{Op: "resize", Code: CodeInvalidArgument, Message: "cols and rows must be positive"}
	}
	msg, _ := json.Marshal(struct {
		Type string `json:"type"`
		Cols int    `json:"cols"`
		Rows int    `json:"rows"`
	}{"resize", cols, rows})
	if err := h.conn.Write(ctx, websocket.MessageText, msg); err != nil {
		return h.writeError(err)
	}
	return nil
}

func (h *PTYHandle) writeError(err error) error {
	select {
	case <-h.done:
		if h.exited {
			return &Error{Op: "pty", Code: CodeStream, Message: "the shell has exited", Err: err}
		}
	default:
	}
	return transportError("pty", err)
}

// Wait waits for the shell to exit and returns its exit code.
func (h *PTYHandle) Wait(ctx context.Context) (int, error) {
	select {
	case <-h.done:
		if h.exited {
			return h.exitCode, nil
		}
		return -1, h.err
	case <-ctx.Done():
		return -1, &Error{Op: "wait", Code: CodeTransport, Message: ctx.Err().Error(), Err: ctx.Err()}
	}
}

// Done is closed when the connection has ended.
func (h *PTYHandle) Done() <-chan struct{} { return h.done }

// Kill ends the session: the shell is killed.
func (h *PTYHandle) Kill(ctx context.Context) error {
	err := h.sbx.dataJSON(ctx, http.MethodDelete, "/pty/"+url.PathEscape(h.SessionID), nil, nil, nil)
	if errors.Is(err, ErrNotFound) {
		select {
		case <-h.done: // already exited: nothing left to kill
			err = nil
		default:
		}
	}
	h.Close()
	return err
}

// Close drops the connection; the session lives on until its shell exits or
// it is killed, and Connect can attach again.
func (h *PTYHandle) Close() error {
	h.closing.Do(func() {
		_ = h.conn.Close(websocket.StatusNormalClosure, "")
		h.cancel()
	})
	<-h.done
	return nil
}
