// Package agentapi is the protocol between a worker and the in-sandbox agent:
// HTTP/1.1 over the unix socket the agent listens on inside each sandbox.
// It has no dependencies so that the agent stays a small static binary.
//
// Routes served by the agent (errors are api.ErrorBody JSON):
//
//	GET    /health                       200 Health
//	POST   /exec                         ExecRequest -> 200 api.ProcessResult
//	GET    /files?path=                  200 raw bytes (Content-Length set)
//	PUT    /files?path=&mode=            raw body -> 200 api.EntryInfo
//	DELETE /files?path=                  204
//	GET    /files/list?path=&depth=      200 []api.EntryInfo
//	GET    /files/stat?path=             200 api.EntryInfo
//	POST   /files/mkdir?path=            200 api.EntryInfo
//	POST   /files/rename                 api.RenameRequest -> 200 api.EntryInfo
package agentapi

// SocketDir is where the per-sandbox host directory is mounted in the sandbox;
// the agent listens on SocketDir + "/" + SocketName.
const (
	SocketDir  = "/.osb/run"
	SocketName = "agent.sock"
	BinaryPath = "/.osb/agent"
)

// DefaultMaxOutput caps each captured output stream of a command.
const DefaultMaxOutput = 10 << 20

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

// Health is the agent's answer to GET /health.
type Health struct {
	OK      bool   `json:"ok"`
	PID     int    `json:"pid"`
	Version string `json:"version"`
}
