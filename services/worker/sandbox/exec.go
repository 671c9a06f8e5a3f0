package sandbox

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/agentapi"
	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/shared/errs"
	"github.com/opensandbox/opensandbox/services/shared/events"
	"github.com/opensandbox/opensandbox/services/worker/internal/agentclient"
	"github.com/opensandbox/opensandbox/services/worker/internal/sandboxdb"
)

// execRequest validates a command and turns it into an agent request;
// defaultTimeout applies when the command sets none (0: no timeout).
func (m *Manager) execRequest(p api.ProcessConfig, defaultTimeout time.Duration) (agentapi.ExecRequest, error) {
	if p.Cmd == "" {
		return agentapi.ExecRequest{}, errs.Invalid("cmd is required")
	}
	timeout := time.Duration(p.Timeout) * time.Second
	switch {
	case p.Timeout < 0:
		return agentapi.ExecRequest{}, errs.Invalid("timeout must not be negative")
	case p.Timeout == 0:
		timeout = defaultTimeout
	case timeout > m.cfg.MaxExecTimeout:
		return agentapi.ExecRequest{}, errs.Invalid("timeout is over the maximum of %ds", int(m.cfg.MaxExecTimeout.Seconds()))
	}
	for k := range p.Envs {
		if !envKeyRE.MatchString(k) {
			return agentapi.ExecRequest{}, errs.Invalid("invalid environment variable name %q", k)
		}
	}
	req := agentapi.ExecRequest{
		Cmd:       p.Cmd,
		Args:      p.Args,
		Shell:     len(p.Args) == 0,
		Envs:      p.Envs,
		Cwd:       p.Cwd,
		TimeoutMs: timeout.Milliseconds(),
		MaxOutput: m.cfg.MaxOutput,
	}
	if p.Stdin != nil {
		req.Stdin = []byte(*p.Stdin)
	}
	return req, nil
}

// ExecResult is a finished command whose output is still to be read from
// its agent: WriteOutput streams it, so the worker holds at most a frame of
// it however large it is. Close releases the command's slot in its sandbox.
type ExecResult struct {
	api.ProcessResult // everything but Stdout and Stderr
	StdoutLen         int
	StderrLen         int
	Timing            ExecTiming
	answer            *agentclient.ExecAnswer
	release           func()
}

// ExecTiming is where a command's time went on the worker: the round trip
// to the agent, of it the process itself (fork to exit, as the agent saw
// it), and writing the command log row and its event.
type ExecTiming struct {
	Agent, Process, Log time.Duration
}

// WriteOutput streams stdout, then stderr, to the writers.
func (r *ExecResult) WriteOutput(stdout, stderr io.Writer) error {
	return r.answer.Output(stdout, stderr)
}

// Collect reads the whole output into the result and closes it.
func (r *ExecResult) Collect() (api.ProcessResult, error) {
	defer r.Close()
	return r.answer.Result()
}

// Close releases the answer and the command's slot.
func (r *ExecResult) Close() {
	r.answer.Close()
	r.release()
}

// Exec runs a command to completion and returns its whole result.
func (m *Manager) Exec(ctx context.Context, id string, p api.ProcessConfig) (api.ProcessResult, error) {
	r, err := m.Command(ctx, id, p)
	if err != nil {
		return api.ProcessResult{}, err
	}
	res, err := r.Collect()
	if err != nil {
		return api.ProcessResult{}, m.agentErr(id, err)
	}
	return res, nil
}

// Command runs a command to completion and logs it; its output is read
// from the result, streamed from the agent. At most Config.MaxExecs run at once in a sandbox (until
// their results are closed); more are refused with 429 too_many_commands.
// Ending ctx before the command ends kills it.
func (m *Manager) Command(ctx context.Context, id string, p api.ProcessConfig) (*ExecResult, error) {
	b, err := m.get(id)
	if err != nil {
		return nil, err
	}
	req, err := m.execRequest(p, m.cfg.DefaultExecTimeout)
	if err != nil {
		return nil, err
	}
	select {
	case b.execs <- struct{}{}:
	default:
		return nil, errs.New(errs.KindQuota, "too_many_commands",
			"%d commands are already running in this sandbox; wait for one to finish or run it in the background", m.cfg.MaxExecs)
	}
	release := sync.OnceFunc(func() { <-b.execs })
	if !b.beginWork() {
		release()
		return nil, errs.ErrSandboxNotFound
	}
	defer b.work.Done()
	start := time.Now()
	a, err := b.agent.Exec(ctx, req)
	m.metrics.ExecDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		release()
		m.metrics.Commands.WithLabelValues("error").Inc()
		return nil, m.agentErr(id, err)
	}
	m.metrics.Commands.WithLabelValues(exitClass(a.ExitCode, a.TimedOut)).Inc()
	if a.OOMKilled {
		m.metrics.OOMKills.Inc()
	}
	agentTime := time.Since(start)
	m.logCommand(ctx, b, p, finished{exitCode: a.ExitCode, durationMs: a.DurationMs, stdoutLen: a.StdoutLen, stderrLen: a.StderrLen}, start)
	return &ExecResult{
		Timing: ExecTiming{Agent: agentTime, Process: time.Duration(a.DurationUs) * time.Microsecond, Log: time.Since(start) - agentTime},
		ProcessResult: api.ProcessResult{
			ExitCode: a.ExitCode, StdoutTruncated: a.StdoutTruncated, StderrTruncated: a.StderrTruncated,
			TimedOut: a.TimedOut, DurationMs: a.DurationMs, OOMKilled: a.OOMKilled,
		},
		StdoutLen: a.StdoutLen, StderrLen: a.StderrLen, answer: a, release: release,
	}, nil
}

func exitClass(code int, timedOut bool) string {
	switch {
	case timedOut:
		return "timeout"
	case code == 0:
		return "ok"
	default:
		return "nonzero"
	}
}

// finished is what the command log keeps of a command that ran.
type finished struct {
	exitCode             int
	durationMs           int64
	stdoutLen, stderrLen int
}

func (m *Manager) logCommand(ctx context.Context, b *box, p api.ProcessConfig, res finished, start time.Time) {
	cmd := events.CommandData{
		Command: p.Cmd, Args: p.Args, Cwd: p.Cwd, ExitCode: res.exitCode, DurationMs: res.durationMs,
		StdoutLen: res.stdoutLen, StderrLen: res.stderrLen,
	}
	ev := events.Event{Type: events.TypeCommand, Command: &cmd}
	b.dbMu.RLock()
	defer b.dbMu.RUnlock()
	if b.closed {
		return
	}
	m.fillEvent(b, &ev)
	row := sandboxdb.Command{
		Command: p.Cmd, Args: p.Args, Cwd: p.Cwd, ExitCode: res.exitCode, DurationMs: res.durationMs,
		StdoutLen: res.stdoutLen, StderrLen: res.stderrLen, CreatedAt: start.UTC(),
	}
	// The log must not fail a command that already ran; a write error is logged.
	if err := b.db.LogCommand(context.WithoutCancel(ctx), row, dbEvent(ev)); err != nil {
		m.log.Error("log command", "sandbox_id", b.info.SandboxID, "err", err)
		return
	}
	m.notify(b.info.SandboxID)
}

// agentErr reports a sandbox destroyed during the call as not found rather
// than as an unreachable agent.
func (m *Manager) agentErr(id string, err error) error {
	if _, gone := m.get(id); gone != nil {
		return errs.ErrSandboxNotFound
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return errs.New(errs.KindTimeout, "canceled", "request canceled").WithCause(err)
	}
	return err
}

// agentFor returns the agent client of a live sandbox.
func (m *Manager) agentFor(id string) (*agentclient.Client, error) {
	b, err := m.get(id)
	if err != nil {
		return nil, err
	}
	return b.agent, nil
}

// FileReader is a streamed file.
type FileReader = agentclient.File

// ReadFile opens a file for streaming; rangeHdr is an optional HTTP Range.
func (m *Manager) ReadFile(ctx context.Context, id, path, rangeHdr string) (*FileReader, error) {
	a, err := m.agentFor(id)
	if err != nil {
		return nil, err
	}
	f, err := a.ReadFile(ctx, path, rangeHdr)
	if err != nil {
		return nil, m.agentErr(id, err)
	}
	f.Body = &countingReader{ReadCloser: f.Body, add: m.metrics.FileBytes.WithLabelValues("download").Add}
	return f, nil
}

// WriteFile streams r into path (size -1 when unknown).
func (m *Manager) WriteFile(ctx context.Context, id, path, mode string, r io.Reader, size int64) (api.EntryInfo, error) {
	a, err := m.agentFor(id)
	if err != nil {
		return api.EntryInfo{}, err
	}
	cr := &countingReader{ReadCloser: io.NopCloser(r), add: m.metrics.FileBytes.WithLabelValues("upload").Add}
	e, err := a.WriteFile(ctx, path, mode, cr, size)
	if err != nil {
		return api.EntryInfo{}, m.agentErr(id, err)
	}
	return e, nil
}

// ListDir lists a directory to depth.
func (m *Manager) ListDir(ctx context.Context, id, path string, depth int) ([]api.EntryInfo, error) {
	a, err := m.agentFor(id)
	if err != nil {
		return nil, err
	}
	out, err := a.List(ctx, path, depth)
	return out, m.agentErrOrNil(id, err)
}

// Stat describes one path.
func (m *Manager) Stat(ctx context.Context, id, path string) (api.EntryInfo, error) {
	a, err := m.agentFor(id)
	if err != nil {
		return api.EntryInfo{}, err
	}
	e, err := a.Stat(ctx, path)
	return e, m.agentErrOrNil(id, err)
}

// MakeDir creates a directory and its parents.
func (m *Manager) MakeDir(ctx context.Context, id, path string) (api.EntryInfo, error) {
	a, err := m.agentFor(id)
	if err != nil {
		return api.EntryInfo{}, err
	}
	e, err := a.MakeDir(ctx, path)
	return e, m.agentErrOrNil(id, err)
}

// Remove deletes a path recursively.
func (m *Manager) Remove(ctx context.Context, id, path string) error {
	a, err := m.agentFor(id)
	if err != nil {
		return err
	}
	return m.agentErrOrNil(id, a.Remove(ctx, path))
}

// Rename moves a path.
func (m *Manager) Rename(ctx context.Context, id, from, to string) (api.EntryInfo, error) {
	a, err := m.agentFor(id)
	if err != nil {
		return api.EntryInfo{}, err
	}
	e, err := a.Rename(ctx, from, to)
	return e, m.agentErrOrNil(id, err)
}

func (m *Manager) agentErrOrNil(id string, err error) error {
	if err == nil {
		return nil
	}
	return m.agentErr(id, err)
}

// countingReader feeds a byte counter as data moves.
type countingReader struct {
	io.ReadCloser
	add func(float64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	if n > 0 {
		c.add(float64(n))
	}
	return n, err
}
