package agentapi

import "time"

// PTYRequest starts a shell on a new terminal.
type PTYRequest struct {
	Cols  int               `json:"cols"`
	Rows  int               `json:"rows"`
	Shell string            `json:"shell,omitempty"` // default /bin/bash, else /bin/sh
	Envs  map[string]string `json:"envs,omitempty"`
	Cwd   string            `json:"cwd,omitempty"`
}

// Size is a terminal size: the payload of a Resize frame and the body of
// POST /pty/{id}/resize.
type Size struct {
	Cols int `json:"cols"`
	Rows int `json:"rows"`
}

// PTYInfo describes a terminal session. Byte counts are what the shell read
// (in) and wrote (out) through the terminal.
type PTYInfo struct {
	ID        string     `json:"id"`
	PID       int        `json:"pid"`
	Shell     string     `json:"shell"`
	StartedAt time.Time  `json:"startedAt"`
	Running   bool       `json:"running"`
	ExitCode  int        `json:"exitCode"`
	EndedAt   *time.Time `json:"endedAt,omitempty"`
	BytesIn   int64      `json:"bytesIn"`
	BytesOut  int64      `json:"bytesOut"`
}
