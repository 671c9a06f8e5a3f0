// Package agentapi is the protocol between a worker and the in-sandbox agent:
// HTTP/1.1 over the unix socket the agent listens on inside each sandbox.
// It has no dependencies so that the agent stays a small static binary.
//
// Routes served by the agent (errors are api.ErrorBody JSON):
//
//	GET    /health                       200 Health
//	POST   /exec                         ExecRequest -> 200 api.ProcessResult, or
//	                                     with Accept: FramesContentType 200
//	                                     frames: Exit (ExecExit), Stdout...,
//	                                     Stderr... (the output after its size)
//	GET    /files?path=                  200 raw bytes (Content-Length set)
//	PUT    /files?path=&mode=            raw body -> 200 api.EntryInfo
//	DELETE /files?path=                  204
//	GET    /files/list?path=&depth=      200 []api.EntryInfo
//	GET    /files/stat?path=             200 api.EntryInfo
//	POST   /files/mkdir?path=            200 api.EntryInfo
//	POST   /files/rename                 api.RenameRequest -> 200 api.EntryInfo
//	GET    /files/watch?path=&recursive= 200 frames: Ready, then Event...
//
//	POST   /processes                    StartRequest -> 200 Started, or with
//	                                     Follow 200 frames: Start, Stdout/Stderr..., Exit
//	GET    /processes                    200 []api.ProcessInfo
//	GET    /processes/{pid}/stream       200 frames: replay, then live, Exit
//	POST   /processes/{pid}/stdin        raw body -> 204
//	DELETE /processes/{pid}/stdin        204
//	POST   /processes/{pid}/signal       api.SignalRequest -> 204
//	DELETE /processes/{pid}              204 (SIGKILL to its process group)
//
//	POST   /pty                          PTYRequest -> 201 PTYInfo
//	GET    /pty                          200 []PTYInfo
//	GET    /pty/{id}                     200 PTYInfo
//	GET    /pty/{id}/attach              Upgrade: osb-frames -> 101, then frames
//	                                     both ways (Data, Resize in; Data, Exit out)
//	GET    /pty/{id}/wait                200 PTYInfo once the shell has ended
//	POST   /pty/{id}/resize              Size -> 200 {}
//	DELETE /pty/{id}                     204 (the shell's whole session is killed)
//
// Frame streams (see frame.go) carry a Keepalive frame after
// KeepaliveInterval without other frames, so that idle streams stay
// distinguishable from dead ones.
package agentapi

import "time"

// SocketDir is where the per-sandbox host directory is mounted in the sandbox;
// the agent listens on SocketDir + "/" + SocketName.
const (
	SocketDir  = "/.osb/run"
	SocketName = "agent.sock"
	BinaryPath = "/.osb/agent"
)

// DefaultMaxOutput caps each captured output stream of a command.
const DefaultMaxOutput = 10 << 20

// KeepaliveInterval is how long a frame stream may stay silent.
const KeepaliveInterval = 15 * time.Second

// FramesContentType marks a frame stream; a worker that sends it in Accept
// gets the exec answer as frames (older agents answer JSON).
const FramesContentType = "application/x-osb-frames"

// ExecExit is the first frame of a framed exec answer: how the command
// ended and how many output bytes follow on each stream.
type ExecExit struct {
	ExitCode        int   `json:"exitCode"`
	TimedOut        bool  `json:"timedOut,omitempty"`
	DurationMs      int64 `json:"durationMs"`
	DurationUs      int64 `json:"durationUs,omitempty"` // the same, finer: fork to exit
	StdoutLen       int   `json:"stdoutLen"`
	StderrLen       int   `json:"stderrLen"`
	StdoutTruncated bool  `json:"stdoutTruncated,omitempty"`
	StderrTruncated bool  `json:"stderrTruncated,omitempty"`
	// OOMKilled: the sandbox ran out of memory while the command ran and
	// the kernel killed it (exit code 137).
	OOMKilled bool `json:"oomKilled,omitempty"`
}

// UpgradeProtocol is the Upgrade token of a PTY attach.
const UpgradeProtocol = "osb-frames"

// ExecRequest runs one command to completion.
type ExecRequest struct {
	Cmd       string            `json:"cmd"`
	Args      []string          `json:"args,omitempty"`
	Shell     bool              `json:"shell,omitempty"` // run Cmd through /bin/sh -c
	Envs      map[string]string `json:"envs,omitempty"`
	Cwd       string            `json:"cwd,omitempty"`
	TimeoutMs int64             `json:"timeoutMs,omitempty"`
	Stdin     []byte            `json:"stdin,omitempty"`
	MaxOutput int               `json:"maxOutput,omitempty"`
}

// Health is the agent's answer to GET /health. The counts let the worker
// and tests see that streams release what they hold.
type Health struct {
	OK          bool   `json:"ok"`
	PID         int    `json:"pid"`
	Version     string `json:"version"`
	Processes   int    `json:"processes"`   // managed processes still running
	PTYSessions int    `json:"ptySessions"` // shells still running
	Watches     int    `json:"watches"`     // file watches in place
}
