package agentapi

// StartRequest starts a managed process: one that is listed, can be
// connected to, takes stdin and signals, and outlives the request unless
// it follows it.
type StartRequest struct {
	ExecRequest
	Tag string `json:"tag,omitempty"`
	// KeepStdin leaves stdin open for POST /processes/{pid}/stdin; otherwise
	// Stdin is written and stdin closed.
	KeepStdin bool `json:"keepStdin,omitempty"`
	// Follow answers with the process's frames; closing that stream before
	// the process exits kills its process group.
	Follow bool `json:"follow,omitempty"`
}

// Started is the answer to a StartRequest without Follow, and the payload
// of a Start frame.
type Started struct {
	PID int `json:"pid"`
}

// Exit is the payload of an Exit frame.
type Exit struct {
	ExitCode int  `json:"exitCode"`
	TimedOut bool `json:"timedOut,omitempty"`
}
