package opensandbox

import "time"

// Sandbox states.
const (
	StatusRunning = "running"
	StatusStopped = "stopped"
	StatusError   = "error"
)

// SandboxInfo is what the API tells about one sandbox.
type SandboxInfo struct {
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

// CreateOptions configures a new sandbox. Zero values take the server's defaults.
type CreateOptions struct {
	Template       string            // template name or image; server default "base"
	Alias          string            // optional human name
	Timeout        time.Duration     // lifetime; whole seconds (rounded up), server default 5 minutes
	Envs           map[string]string // environment of every command
	Metadata       map[string]string // free-form labels
	CPUCount       int
	MemoryMB       int
	DiskMB         int // root file system limit in MiB; server default 10240
	NetworkEnabled bool
	// Region places the sandbox there; without capacity the control plane
	// falls back to the next region (SandboxInfo.Region says which) unless
	// StrictRegion is set, when the create fails with no_capacity.
	Region       string
	StrictRegion bool
}

// createRequest is the body of POST /sandboxes.
type createRequest struct {
	TemplateID     string            `json:"templateID,omitempty"`
	Alias          string            `json:"alias,omitempty"`
	Metadata       map[string]string `json:"metadata,omitempty"`
	Timeout        int               `json:"timeout,omitempty"`
	CPUCount       int               `json:"cpuCount,omitempty"`
	MemoryMB       int               `json:"memoryMB,omitempty"`
	DiskMB         int               `json:"diskMB,omitempty"`
	Envs           map[string]string `json:"envs,omitempty"`
	NetworkEnabled bool              `json:"networkEnabled,omitempty"`
	Region         string            `json:"region,omitempty"`
	StrictRegion   bool              `json:"strictRegion,omitempty"`
}

// tokenAnswer is the answer of POST /sandboxes/:id/token.
type tokenAnswer struct {
	Token          string     `json:"token"`
	TokenExpiresAt *time.Time `json:"tokenExpiresAt"`
	ConnectURL     string     `json:"connectURL"`
}

// CommandResult is a finished command.
type CommandResult struct {
	PID             int    `json:"pid,omitempty"` // known for streamed and background runs
	ExitCode        int    `json:"exitCode"`
	Stdout          string `json:"stdout"`
	Stderr          string `json:"stderr"`
	StdoutTruncated bool   `json:"stdoutTruncated,omitempty"`
	StderrTruncated bool   `json:"stderrTruncated,omitempty"`
	TimedOut        bool   `json:"timedOut,omitempty"`
	DurationMs      int64  `json:"durationMs"`
	// OOMKilled: the sandbox ran out of memory and the kernel killed the
	// command (exit code 137); the sandbox lives on.
	OOMKilled bool `json:"oomKilled,omitempty"`
}

// ProcessInfo describes a process started with Start or a streamed Run.
type ProcessInfo struct {
	PID       int       `json:"pid"`
	Cmd       string    `json:"cmd"`
	Args      []string  `json:"args,omitempty"`
	Cwd       string    `json:"cwd,omitempty"`
	Tag       string    `json:"tag,omitempty"`
	StartedAt time.Time `json:"startedAt"`
	Running   bool      `json:"running"`
	ExitCode  *int      `json:"exitCode"` // nil while running
}

// processConfig is the body of POST /sandboxes/:id/commands.
type processConfig struct {
	Cmd        string            `json:"cmd"`
	Args       []string          `json:"args,omitempty"`
	Envs       map[string]string `json:"envs,omitempty"`
	Cwd        string            `json:"cwd,omitempty"`
	Timeout    int               `json:"timeout,omitempty"`
	Stdin      *string           `json:"stdin,omitempty"`
	Background bool              `json:"background,omitempty"`
	Stream     bool              `json:"stream,omitempty"`
	Tag        string            `json:"tag,omitempty"`
}

// EntryInfo describes one file system entry in a sandbox.
type EntryInfo struct {
	Name          string    `json:"name"`
	Path          string    `json:"path"`
	IsDir         bool      `json:"isDir"`
	Size          int64     `json:"size"`
	Mode          string    `json:"mode"` // octal permission bits, e.g. "0644"
	ModTime       time.Time `json:"modTime"`
	SymlinkTarget string    `json:"symlinkTarget,omitempty"`
}

// Filesystem event types of Watch.
const (
	EventCreate = "create"
	EventWrite  = "write"
	EventRemove = "remove"
	EventRename = "rename"
	EventChmod  = "chmod"
	// EventOverflow: the kernel dropped events; rescan if it matters.
	EventOverflow = "overflow"
)

// FilesystemEvent is one change seen by Watch.
type FilesystemEvent struct {
	Type  string `json:"type"` // EventCreate, EventWrite, ...
	Path  string `json:"path"`
	IsDir bool   `json:"isDir"`
}

// ProgressFunc is called as a transfer advances; total is -1 when unknown.
type ProgressFunc func(done, total int64)
