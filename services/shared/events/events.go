// Package events defines the sandbox events a worker records in its
// per-sandbox SQLite and later publishes to NATS JetStream for the syncer.
package events

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"
	"unicode/utf8"
)

// Event types.
const (
	TypeCreated  = "created"
	TypeCommand  = "command"
	TypePTYStart = "pty_start"
	TypePTYEnd   = "pty_end"
	TypeTimeout  = "timeout"
	TypeKilled   = "killed"
	TypeError    = "error"
)

// Event is one thing that happened to a sandbox. ID is globally unique and is
// used as the JetStream message id, so a redelivery collapses into one row.
type Event struct {
	ID        string    `json:"id"`
	Type      string    `json:"type"`
	SandboxID string    `json:"sandboxID"`
	OrgID     string    `json:"orgID,omitempty"`
	WorkerID  string    `json:"workerID"`
	Region    string    `json:"region,omitempty"`
	Time      time.Time `json:"time"`

	Sandbox *SandboxData `json:"sandbox,omitempty"` // created
	Command *CommandData `json:"command,omitempty"` // command
	PTY     *PTYData     `json:"pty,omitempty"`     // pty_start, pty_end
	Error   string       `json:"error,omitempty"`   // error
}

// SandboxData describes a sandbox at creation.
type SandboxData struct {
	Template  string            `json:"template"`
	CPUCount  int               `json:"cpuCount"`
	MemoryMB  int               `json:"memoryMB"`
	TimeoutS  int               `json:"timeoutS"`
	Metadata  map[string]string `json:"metadata,omitempty"`
	StartedAt time.Time         `json:"startedAt"`
}

// CommandData describes a finished command.
type CommandData struct {
	Command    string   `json:"command"`
	Args       []string `json:"args,omitempty"`
	Cwd        string   `json:"cwd,omitempty"`
	ExitCode   int      `json:"exitCode"`
	DurationMs int64    `json:"durationMs"`
	StdoutLen  int      `json:"stdoutLen"`
	StderrLen  int      `json:"stderrLen"`
}

// PTYData describes a terminal session.
type PTYData struct {
	SessionID string     `json:"sessionID"`
	StartedAt time.Time  `json:"startedAt"`
	EndedAt   *time.Time `json:"endedAt,omitempty"`
	BytesIn   int64      `json:"bytesIn"`
	BytesOut  int64      `json:"bytesOut"`
}

// NewID returns a random 128-bit id, time-ordered in its first 48 bits like a
// UUIDv7 so that ids sort roughly by creation.
func NewID() string {
	var b [16]byte
	rand.Read(b[6:])
	ms := uint64(time.Now().UnixMilli())
	for i := 5; i >= 0; i-- {
		b[i] = byte(ms)
		ms >>= 8
	}
	return hex.EncodeToString(b[:])
}

// Bounds on the free-text fields of an event. An event must fit in one
// NATS message (1 MiB by default) with room to spare, whatever a user ran:
// a 10 MiB inline script would otherwise block its sandbox's events for good.
const (
	MaxTextBytes = 4096 // command, each argument, cwd, error
	MaxArgs      = 64
)

// Bound cuts ev's free-text fields to the bounds above, marking each cut
// with "…".
func (ev *Event) Bound() {
	ev.Error = cut(ev.Error)
	c := ev.Command
	if c == nil {
		return
	}
	c.Command, c.Cwd = cut(c.Command), cut(c.Cwd)
	long := len(c.Args) > MaxArgs
	for _, a := range c.Args {
		long = long || len(a) > MaxTextBytes
	}
	if !long {
		return
	}
	// A new slice: the caller's arguments stay as they are.
	args := make([]string, 0, min(len(c.Args), MaxArgs))
	for i, a := range c.Args {
		if i == MaxArgs-1 && len(c.Args) > MaxArgs {
			args = append(args, fmt.Sprintf("… (%d more arguments)", len(c.Args)-i))
			break
		}
		args = append(args, cut(a))
	}
	c.Args = args
}

// cut shortens s to at most MaxTextBytes, on a UTF-8 boundary.
func cut(s string) string {
	if len(s) <= MaxTextBytes {
		return s
	}
	const mark = "…"
	n := MaxTextBytes - len(mark)
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + mark
}
