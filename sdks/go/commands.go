package opensandbox

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// maxCollected bounds the output a streamed run keeps in its CommandResult,
// per stream, like the server does for plain runs. Callbacks see everything.
const maxCollected = 10 << 20

// Commands runs commands in a sandbox. Get it with Sandbox.Commands.
type Commands struct{ sbx *Sandbox }

// RunOptions configures Run and Start.
type RunOptions struct {
	// Args, when set, runs cmd with these arguments as argv (cmd looked up in
	// PATH); without Args, cmd runs through /bin/sh -c.
	Args []string
	Envs map[string]string // merged over the sandbox's environment
	Cwd  string
	// Timeout kills the command's process group when it runs longer (whole
	// seconds, rounded up). Zero means the server default: 60 s for Run,
	// none for Start.
	Timeout time.Duration
	// Stdin is written to the command, then its stdin is closed. Leave it
	// empty with Start to keep stdin open for SendStdin.
	Stdin string
	// OnStdout and OnStderr receive output as it is printed. With either set,
	// Run streams the command instead of waiting for its whole answer.
	OnStdout func(data []byte)
	OnStderr func(data []byte)
	// Tag labels a process started with Start (shown by List).
	Tag string
}

func (o RunOptions) config(cmd string) processConfig {
	p := processConfig{Cmd: cmd, Args: o.Args, Envs: o.Envs, Cwd: o.Cwd, Timeout: seconds(o.Timeout), Tag: o.Tag}
	if o.Stdin != "" {
		stdin := o.Stdin
		p.Stdin = &stdin
	}
	return p
}

// Run runs cmd to completion and returns its result. A non-zero exit code is
// not an error: read CommandResult.ExitCode. A command killed by its timeout
// returns its result together with an error matching ErrTimeout.
func (c *Commands) Run(ctx context.Context, cmd string, opts RunOptions) (*CommandResult, error) {
	p := opts.config(cmd)
	if opts.OnStdout == nil && opts.OnStderr == nil {
		var res CommandResult
		if err := c.sbx.dataJSON(ctx, http.MethodPost, "/commands", nil, p, &res); err != nil {
			return nil, err
		}
		return &res, timeoutError(&res)
	}
	p.Stream = true
	r, err := jsonRequest(http.MethodPost, c.sbx.path("/commands"), nil, p)
	if err != nil {
		return nil, err
	}
	r.header.Set("Accept", "text/event-stream")
	started := time.Now()
	resp, err := c.sbx.send(ctx, r)
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		// A server without streams answered the whole result at once.
		var res CommandResult
		if err := decodeJSON(r.op(), resp, &res); err != nil {
			return nil, err
		}
		deliver(opts.OnStdout, res.Stdout)
		deliver(opts.OnStderr, res.Stderr)
		return &res, timeoutError(&res)
	}
	defer resp.Body.Close()
	res, err := collect(r.op(), resp.Body, opts.OnStdout, opts.OnStderr)
	if err != nil {
		return nil, err
	}
	res.DurationMs = time.Since(started).Milliseconds()
	return res, timeoutError(res)
}

func deliver(fn func([]byte), s string) {
	if fn != nil && s != "" {
		fn([]byte(s))
	}
}

func timeoutError(res *CommandResult) error {
	if !res.TimedOut {
		return nil
	}
	return &Error{Op: "run", Code: CodeCommandTimeout, Message: "the command ran out of time and was killed"}
}

// Start starts cmd in the background and returns at once with its handle.
// The process outlives ctx; it ends by itself, by Kill, or with the sandbox.
// With OnStdout or OnStderr set, the handle follows the output right away.
func (c *Commands) Start(ctx context.Context, cmd string, opts RunOptions) (*CommandHandle, error) {
	p := opts.config(cmd)
	p.Background = true
	var ans struct {
		PID int `json:"pid"`
	}
	if err := c.sbx.dataJSON(ctx, http.MethodPost, "/commands", nil, p, &ans); err != nil {
		return nil, err
	}
	if ans.PID <= 0 {
		return nil, &Error{Op: "start", Code: CodeUnexpectedAnswer, Message: "the server answered no pid"}
	}
	h := newHandle(c.sbx, ans.PID, opts.OnStdout, opts.OnStderr)
	if opts.OnStdout != nil || opts.OnStderr != nil {
		h.follow(ctx)
	}
	return h, nil
}

// List returns the sandbox's processes started with Start or a streamed Run,
// running ones and those that ended recently.
func (c *Commands) List(ctx context.Context) ([]ProcessInfo, error) {
	var out []ProcessInfo
	if err := c.sbx.dataJSON(ctx, http.MethodGet, "/processes", nil, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// ConnectOptions configures Commands.Connect.
type ConnectOptions struct {
	OnStdout func(data []byte)
	OnStderr func(data []byte)
}

// Connect attaches to a process by pid: its callbacks first receive what it
// printed so far (the last MiB of each stream), then live output. An unknown
// pid answers an error matching ErrNotFound.
func (c *Commands) Connect(ctx context.Context, pid int, opts ConnectOptions) (*CommandHandle, error) {
	// The output stream of a silent process may not answer before it prints,
	// so ask the process list whether the pid exists.
	procs, err := c.List(ctx)
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(procs, func(p ProcessInfo) bool { return p.PID == pid }) {
		return nil, &Error{Op: "connect", Status: http.StatusNotFound, Code: CodeProcessNotFound,
			Message: fmt.Sprintf("process %d not found", pid)}
	}
	h := newHandle(c.sbx, pid, opts.OnStdout, opts.OnStderr)
	h.follow(ctx)
	return h, nil
}

// CommandHandle is a process running in the background.
type CommandHandle struct {
	PID int

	sbx                *Sandbox
	onStdout, onStderr func([]byte)

	mu      sync.Mutex
	started bool
	cancel  context.CancelFunc
	done    chan struct{}
	result  *CommandResult
	err     error
}

func newHandle(sbx *Sandbox, pid int, onStdout, onStderr func([]byte)) *CommandHandle {
	return &CommandHandle{PID: pid, sbx: sbx, onStdout: onStdout, onStderr: onStderr, done: make(chan struct{})}
}

func (h *CommandHandle) path(rest string) string {
	return "/processes/" + strconv.Itoa(h.PID) + rest
}

// follow starts (once) reading the process's output stream in the
// background, until the process exits or Disconnect is called. It does not
// wait for the stream to open: a server may answer only once there is output.
func (h *CommandHandle) follow(ctx context.Context) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.started {
		return
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	h.started, h.cancel = true, cancel
	go func() {
		defer cancel()
		res, err := h.stream(sctx)
		if res != nil {
			res.PID = h.PID
		}
		h.result, h.err = res, err
		close(h.done)
	}()
}

func (h *CommandHandle) stream(ctx context.Context) (*CommandResult, error) {
	r := request{method: http.MethodGet, path: h.sbx.path(h.path("/stream")), length: -1,
		header: http.Header{"Accept": {"text/event-stream"}}}
	resp, err := h.sbx.send(ctx, r)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return collect(r.op(), resp.Body, h.onStdout, h.onStderr)
}

// Wait waits for the process to exit and returns its result, with the output
// it printed (the last MiB of each stream when it printed before Wait began).
func (h *CommandHandle) Wait(ctx context.Context) (*CommandResult, error) {
	h.follow(ctx)
	select {
	case <-h.done:
		if h.err != nil {
			return nil, h.err
		}
		return h.result, timeoutError(h.result)
	case <-ctx.Done():
		return nil, &Error{Op: "wait", Code: CodeTransport, Message: ctx.Err().Error(), Err: ctx.Err()}
	}
}

// Disconnect stops following the output; the process keeps running. Wait
// then answers an error: attach again with Commands.Connect.
func (h *CommandHandle) Disconnect() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cancel != nil {
		h.cancel()
	}
}

// Kill sends SIGKILL to the process's group.
func (h *CommandHandle) Kill(ctx context.Context) error {
	return h.sbx.dataJSON(ctx, http.MethodDelete, h.path(""), nil, nil, nil)
}

// Signal sends a signal by name ("SIGTERM", "TERM") or number ("15").
func (h *CommandHandle) Signal(ctx context.Context, signal string) error {
	body := struct {
		Signal string `json:"signal"`
	}{signal}
	return h.sbx.dataJSON(ctx, http.MethodPost, h.path("/signal"), nil, body, nil)
}

// SendStdin writes data to the process's stdin.
func (h *CommandHandle) SendStdin(ctx context.Context, data []byte) error {
	resp, err := h.sbx.dataRaw(ctx, http.MethodPost, h.path("/stdin"), nil, bytes.NewReader(data), int64(len(data)),
		http.Header{"Content-Type": {"application/octet-stream"}})
	if err != nil {
		return err
	}
	return decodeJSON("stdin", resp, nil)
}

// CloseStdin closes the process's stdin (it reads end of file).
func (h *CommandHandle) CloseStdin(ctx context.Context) error {
	return h.sbx.dataJSON(ctx, http.MethodDelete, h.path("/stdin"), nil, nil, nil)
}

// collect reads a process stream to its exit event.
func collect(op string, body io.Reader, onStdout, onStderr func([]byte)) (*CommandResult, error) {
	var (
		res            CommandResult
		stdout, stderr strings.Builder
	)
	keep := func(b *strings.Builder, data []byte, truncated *bool) {
		if room := maxCollected - b.Len(); room < len(data) {
			data = data[:max(room, 0)]
			*truncated = true
		}
		b.Write(data)
	}
	sse := newSSEReader(body)
	for {
		ev, err := sse.nextEvent()
		if err == io.EOF {
			return nil, &Error{Op: op, Code: CodeStream, Message: "the stream ended before the process exited"}
		}
		if err != nil {
			return nil, transportError(op, err)
		}
		switch ev.Type {
		case "start":
			res.PID = ev.PID
		case "stdout":
			keep(&stdout, ev.Data, &res.StdoutTruncated)
			if onStdout != nil {
				onStdout(ev.Data)
			}
		case "stderr":
			keep(&stderr, ev.Data, &res.StderrTruncated)
			if onStderr != nil {
				onStderr(ev.Data)
			}
		case "exit":
			if ev.ExitCode == nil {
				return nil, &Error{Op: op, Code: CodeUnexpectedAnswer, Message: "exit event without exitCode"}
			}
			res.ExitCode, res.TimedOut = *ev.ExitCode, ev.TimedOut
			res.Stdout, res.Stderr = stdout.String(), stderr.String()
			return &res, nil
		case "error":
			return nil, streamError(op, ev)
		default:
			// Unknown event types are for newer clients.
		}
	}
}

// String shows the handle in logs.
func (h *CommandHandle) String() string { return fmt.Sprintf("process %d", h.PID) }
