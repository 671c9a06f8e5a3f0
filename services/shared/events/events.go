// Package events defines the sandbox events a worker records in its
// per-sandbox SQLite and later publishes to NATS JetStream for the syncer.
package events

import (
	"crypto/rand"
	"encoding/hex"
	"time"
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
