package api

import (
	"encoding/json"
	"time"
)

// Types of ProcessEvent.
const (
	EventStart     = "start"
	EventStdout    = "stdout"
	EventStderr    = "stderr"
	EventExit      = "exit"
	EventError     = "error"
	EventKeepalive = "keepalive" // never sent as data: SSE writes it as a comment line
)

// ProcessEvent is one event of a streamed or connected process (docs/api.md,
// "Streams"). Data carries raw bytes and is base64 in JSON.
type ProcessEvent struct {
	Type     string `json:"type"`
	PID      int    `json:"pid,omitempty"`
	Data     []byte `json:"data,omitempty"`
	ExitCode int    `json:"exitCode"`
	TimedOut bool   `json:"timedOut"`
	Error    string `json:"error,omitempty"`
	Code     string `json:"code,omitempty"`
}

// MarshalJSON writes only the fields the event's type carries, so that a
// stdout event has no exitCode and an exit event always has one.
func (e ProcessEvent) MarshalJSON() ([]byte, error) {
	switch e.Type {
	case EventStart:
		return json.Marshal(struct {
			Type string `json:"type"`
			PID  int    `json:"pid"`
		}{e.Type, e.PID})
	case EventStdout, EventStderr:
		return json.Marshal(struct {
			Type string `json:"type"`
			Data []byte `json:"data"`
		}{e.Type, e.Data})
	case EventExit:
		return json.Marshal(struct {
			Type     string `json:"type"`
			ExitCode int    `json:"exitCode"`
			TimedOut bool   `json:"timedOut"`
		}{e.Type, e.ExitCode, e.TimedOut})
	case EventError:
		return json.Marshal(struct {
			Type  string `json:"type"`
			Error string `json:"error"`
			Code  string `json:"code"`
		}{e.Type, e.Error, e.Code})
	default:
		return json.Marshal(struct {
			Type string `json:"type"`
		}{e.Type})
	}
}

// ProcessStarted answers a background run.
type ProcessStarted struct {
	PID int `json:"pid"`
}

// ProcessInfo is one entry of GET /sandboxes/:id/processes.
type ProcessInfo struct {
	PID       int       `json:"pid"`
	Cmd       string    `json:"cmd"`
	Args      []string  `json:"args"`
	Cwd       string    `json:"cwd"`
	Tag       string    `json:"tag,omitempty"`
	StartedAt time.Time `json:"startedAt"`
	Running   bool      `json:"running"`
	ExitCode  *int      `json:"exitCode"` // null while running
}

// SignalRequest is the body of POST /sandboxes/:id/processes/:pid/signal.
type SignalRequest struct {
	Signal string `json:"signal"` // a name (SIGTERM, TERM) or a number
}

// PTYConfig is the body of POST /sandboxes/:id/pty.
type PTYConfig struct {
	Cols  int               `json:"cols,omitempty"` // default 80
	Rows  int               `json:"rows,omitempty"` // default 24
	Shell string            `json:"shell,omitempty"`
	Envs  map[string]string `json:"envs,omitempty"`
	Cwd   string            `json:"cwd,omitempty"`
}

// PTYSession answers POST /sandboxes/:id/pty.
type PTYSession struct {
	SessionID string `json:"sessionID"`
	SandboxID string `json:"sandboxID"`
}

// PTYSize is the body of POST /sandboxes/:id/pty/:sessionID/resize.
type PTYSize struct {
	Cols int `json:"cols"`
	Rows int `json:"rows"`
}

// PTYControl is a JSON text frame on the PTY WebSocket: "resize" from the
// client, "exit" from the server.
type PTYControl struct {
	Type     string `json:"type"`
	Cols     int    `json:"cols,omitempty"`
	Rows     int    `json:"rows,omitempty"`
	ExitCode *int   `json:"exitCode,omitempty"`
}

// Types of WatchEvent.
const (
	WatchReady    = "ready"
	WatchCreate   = "create"
	WatchWrite    = "write"
	WatchRemove   = "remove"
	WatchRename   = "rename"
	WatchChmod    = "chmod"
	WatchOverflow = "overflow" // the kernel dropped events; rescan if it matters
)

// WatchEvent is one event of GET /sandboxes/:id/files/watch.
type WatchEvent struct {
	Type  string `json:"type"`
	Path  string `json:"path"`
	IsDir bool   `json:"isDir"`
}

// MarshalJSON leaves path and isDir out of ready and overflow events.
func (e WatchEvent) MarshalJSON() ([]byte, error) {
	if e.Type == WatchReady || e.Type == WatchOverflow {
		return json.Marshal(struct {
			Type string `json:"type"`
		}{e.Type})
	}
	type plain WatchEvent
	return json.Marshal(plain(e))
}
