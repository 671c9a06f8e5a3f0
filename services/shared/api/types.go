// Package api holds the JSON shapes of the public REST API, shared by the
// control plane, the worker and the Go SDK's tests.
package api

import "time"

// Sandbox states.
const (
	StatusRunning = "running"
	StatusStopped = "stopped"
	StatusError   = "error"
)

// SandboxConfig is the body of POST /sandboxes.
type SandboxConfig struct {
	TemplateID     string            `json:"templateID,omitempty"`
	Template       string            `json:"template,omitempty"` // accepted alias of templateID
	Alias          string            `json:"alias,omitempty"`
	Metadata       map[string]string `json:"metadata,omitempty"`
	Timeout        int               `json:"timeout,omitempty"` // seconds
	CPUCount       int               `json:"cpuCount,omitempty"`
	MemoryMB       int               `json:"memoryMB,omitempty"`
	DiskMB         int               `json:"diskMB,omitempty"` // root file system limit; default 10240
	Envs           map[string]string `json:"envs,omitempty"`
	NetworkEnabled bool              `json:"networkEnabled,omitempty"`
	Region         string            `json:"region,omitempty"`
	// StrictRegion keeps the sandbox in Region (or the default region):
	// without capacity there the create fails (503 no_capacity) instead of
	// falling back to the next region.
	StrictRegion bool `json:"strictRegion,omitempty"`
}

// TemplateName returns templateID, or template when only that was sent.
func (c SandboxConfig) TemplateName() string {
	if c.TemplateID != "" {
		return c.TemplateID
	}
	return c.Template
}

// Sandbox is what the API answers about one sandbox.
type Sandbox struct {
	SandboxID      string            `json:"sandboxID"`
	TemplateID     string            `json:"templateID"`
	Alias          string            `json:"alias,omitempty"`
	ClientID       string            `json:"clientID,omitempty"`
	Status         string            `json:"status"`
	StartedAt      time.Time         `json:"startedAt"`
	EndAt          time.Time         `json:"endAt"`
	Metadata       map[string]string `json:"metadata,omitempty"`
	CPUCount       int               `json:"cpuCount"`
	MemoryMB       int               `json:"memoryMB"`
	DiskMB         int               `json:"diskMB,omitempty"`
	NetworkEnabled bool              `json:"networkEnabled"`
	WorkerID       string            `json:"workerID,omitempty"`
	Region         string            `json:"region,omitempty"`
	ConnectURL     string            `json:"connectURL,omitempty"`
	Token          string            `json:"token,omitempty"`
	TokenExpiresAt *time.Time        `json:"tokenExpiresAt,omitempty"`
}

// TimeoutRequest is the body of POST /sandboxes/:id/timeout.
type TimeoutRequest struct {
	Timeout int `json:"timeout"` // seconds from now
}

// ProcessConfig is the body of POST /sandboxes/:id/commands.
// With args, cmd and args run as argv; a bare cmd runs through /bin/sh -c.
type ProcessConfig struct {
	Cmd        string            `json:"cmd"`
	Args       []string          `json:"args,omitempty"`
	Envs       map[string]string `json:"envs,omitempty"`
	Cwd        string            `json:"cwd,omitempty"`
	Timeout    int               `json:"timeout,omitempty"` // seconds; default 60, or none for background
	Stdin      *string           `json:"stdin,omitempty"`
	Background bool              `json:"background,omitempty"` // answer {pid} at once; the process outlives the request
	Stream     bool              `json:"stream,omitempty"`     // answer with a stream of ProcessEvent
	Tag        string            `json:"tag,omitempty"`        // free text shown in the process list
}

// ProcessResult is the answer of a finished command.
type ProcessResult struct {
	ExitCode        int    `json:"exitCode"`
	Stdout          string `json:"stdout"`
	Stderr          string `json:"stderr"`
	StdoutTruncated bool   `json:"stdoutTruncated,omitempty"`
	StderrTruncated bool   `json:"stderrTruncated,omitempty"`
	TimedOut        bool   `json:"timedOut,omitempty"`
	DurationMs      int64  `json:"durationMs"`
	// OOMKilled: the sandbox ran out of memory and the kernel killed the
	// command (exit code 137); the sandbox itself lives on.
	OOMKilled bool `json:"oomKilled,omitempty"`
}

// EntryInfo describes one file system entry.
type EntryInfo struct {
	Name          string    `json:"name"`
	Path          string    `json:"path"`
	IsDir         bool      `json:"isDir"`
	Size          int64     `json:"size"`
	Mode          string    `json:"mode"` // octal permission bits, e.g. "0644"
	ModTime       time.Time `json:"modTime"`
	SymlinkTarget string    `json:"symlinkTarget,omitempty"`
}

// RenameRequest is the body of POST /sandboxes/:id/files/rename.
type RenameRequest struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// ErrorBody is every error answer.
type ErrorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// Health is the answer of GET /health.
type Health struct {
	Status string `json:"status"`
	Role   string `json:"role"`
}
