package sandbox

import (
	"context"
	"encoding/json"
	"io"
	"sync"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/agentapi"
	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/shared/errs"
	"github.com/opensandbox/opensandbox/services/worker/internal/agentclient"
)

// ProcessStream is the output of one process as events, in the order of
// docs/api.md: start (for a streamed run), stdout and stderr (order kept
// within each), keepalive after 15 s of silence, and a final exit, or error
// if the sandbox went away. Next returns io.EOF after the final event.
// Close must be called; closing a streamed run before its exit kills it.
type ProcessStream struct {
	m      *Manager
	b      *box
	s      *agentclient.Stream
	cancel context.CancelFunc
	ended  bool
	once   sync.Once

	// run is set for a streamed run, which is logged as a command at exit;
	// workDone ends its registration with the sandbox (box.beginWork).
	run                  *api.ProcessConfig
	start                time.Time
	stdoutLen, stderrLen int
	workDone             func()
}

// Next returns the next event. Data in stdout and stderr events is a copy
// the caller may keep.
func (ps *ProcessStream) Next() (api.ProcessEvent, error) {
	if ps.ended {
		return api.ProcessEvent{}, io.EOF
	}
	typ, payload, err := ps.s.Next()
	if err != nil {
		ps.ended = true
		ps.workDone()
		return ps.failure(err), nil
	}
	switch typ {
	case agentapi.FrameStart:
		var st agentapi.Started
		json.Unmarshal(payload, &st)
		return api.ProcessEvent{Type: api.EventStart, PID: st.PID}, nil
	case agentapi.FrameStdout, agentapi.FrameStderr:
		ev := api.ProcessEvent{Type: api.EventStdout, Data: append([]byte(nil), payload...)}
		if typ == agentapi.FrameStderr {
			ev.Type = api.EventStderr
			ps.stderrLen += len(payload)
		} else {
			ps.stdoutLen += len(payload)
		}
		ps.m.metrics.StreamBytes.WithLabelValues(ev.Type).Add(float64(len(payload)))
		return ev, nil
	case agentapi.FrameExit:
		var ex agentapi.Exit
		json.Unmarshal(payload, &ex)
		ps.ended = true
		ps.logRun(ex)
		ps.workDone()
		return api.ProcessEvent{Type: api.EventExit, ExitCode: ex.ExitCode, TimedOut: ex.TimedOut}, nil
	case agentapi.FrameError:
		var eb api.ErrorBody
		json.Unmarshal(payload, &eb)
		ps.ended = true
		ps.workDone()
		return api.ProcessEvent{Type: api.EventError, Error: eb.Error, Code: eb.Code}, nil
	default:
		return api.ProcessEvent{Type: api.EventKeepalive}, nil
	}
}

// failure turns a broken agent stream into the stream's last event.
func (ps *ProcessStream) failure(err error) api.ProcessEvent {
	e := errs.ErrSandboxNotFound
	if ps.b.ctx.Err() == nil {
		e = errs.As(ps.m.agentErr(ps.b.info.SandboxID, errs.Unavailable("agent_unreachable", "the sandbox agent stream ended").WithCause(err)))
	}
	return api.ProcessEvent{Type: api.EventError, Error: e.Message, Code: e.Code}
}

func (ps *ProcessStream) logRun(ex agentapi.Exit) {
	if ps.run == nil {
		return
	}
	d := time.Since(ps.start)
	ps.m.metrics.ExecDuration.Observe(d.Seconds())
	ps.m.metrics.Commands.WithLabelValues(exitClass(ex.ExitCode, ex.TimedOut)).Inc()
	ps.m.logCommand(ps.b.ctx, ps.b, *ps.run, finished{exitCode: ex.ExitCode, durationMs: d.Milliseconds(), stdoutLen: ps.stdoutLen, stderrLen: ps.stderrLen}, ps.start)
}

// Close ends the stream; for a streamed run that has not exited, the agent
// kills the process. Cancelling the context the stream was opened with
// has the same effect and may happen while Next waits.
func (ps *ProcessStream) Close() {
	ps.once.Do(func() {
		ps.cancel()
		ps.s.Close()
		ps.workDone()
		ps.m.metrics.StreamsActive.Dec()
	})
}

func (m *Manager) openStream(ctx context.Context, b *box, open func(context.Context) (*agentclient.Stream, error)) (*ProcessStream, error) {
	sctx, cancel, err := m.openConn(ctx, b)
	if err != nil {
		return nil, err
	}
	s, err := open(sctx)
	if err != nil {
		cancel()
		return nil, m.agentErr(b.info.SandboxID, err)
	}
	m.metrics.StreamsActive.Inc()
	return &ProcessStream{m: m, b: b, s: s, cancel: cancel, workDone: func() {}}, nil
}

// StreamProcess starts a command and returns its output as it happens. The
// process lives as long as the stream: Close (or ctx ending, or the sandbox
// going away) before its exit kills it. The command's timeout defaults to
// the exec default (60 s).
func (m *Manager) StreamProcess(ctx context.Context, id string, p api.ProcessConfig) (*ProcessStream, error) {
	b, err := m.get(id)
	if err != nil {
		return nil, err
	}
	req, err := m.execRequest(p, m.cfg.DefaultExecTimeout)
	if err != nil {
		return nil, err
	}
	if !b.beginWork() {
		return nil, errs.ErrSandboxNotFound
	}
	ps, err := m.openStream(ctx, b, func(ctx context.Context) (*agentclient.Stream, error) {
		return b.agent.FollowProcess(ctx, agentapi.StartRequest{ExecRequest: req, Tag: p.Tag})
	})
	if err != nil {
		b.work.Done()
		return nil, err
	}
	m.metrics.ProcessStarts.WithLabelValues("stream").Inc()
	ps.run, ps.start, ps.workDone = &p, time.Now(), sync.OnceFunc(b.work.Done)
	return ps, nil
}

// ExecStream runs a command and calls emit with each event until the exit
// (or error) event, which is emitted too. Keepalive events are passed on
// so that callers can keep their own transport alive; they carry nothing.
// An error from emit stops the stream and kills the process. Errors before
// the process started (bad request, unknown sandbox) are returned without
// any event.
func (m *Manager) ExecStream(ctx context.Context, id string, p api.ProcessConfig, emit func(api.ProcessEvent) error) error {
	ps, err := m.StreamProcess(ctx, id, p)
	if err != nil {
		return err
	}
	defer ps.Close()
	for {
		ev, err := ps.Next()
		if err == io.EOF {
			return nil
		}
		if err := emit(ev); err != nil {
			return err
		}
	}
}

// StartProcess starts a background process and returns its pid at once.
// It lives on after the request, by default without a timeout. Without
// p.Stdin its stdin stays open for WriteStdin.
func (m *Manager) StartProcess(ctx context.Context, id string, p api.ProcessConfig) (api.ProcessStarted, error) {
	b, err := m.get(id)
	if err != nil {
		return api.ProcessStarted{}, err
	}
	req, err := m.execRequest(p, 0)
	if err != nil {
		return api.ProcessStarted{}, err
	}
	st, err := b.agent.StartProcess(ctx, agentapi.StartRequest{ExecRequest: req, Tag: p.Tag, KeepStdin: p.Stdin == nil})
	if err != nil {
		return api.ProcessStarted{}, m.agentErr(id, err)
	}
	m.metrics.ProcessStarts.WithLabelValues("background").Inc()
	m.log.Info("background process started", "sandbox_id", id, "pid", st.PID, "tag", p.Tag)
	return api.ProcessStarted{PID: st.PID}, nil
}

// Processes lists the sandbox's background and streamed processes,
// including recently finished ones.
func (m *Manager) Processes(ctx context.Context, id string) ([]api.ProcessInfo, error) {
	a, err := m.agentFor(id)
	if err != nil {
		return nil, err
	}
	out, err := a.Processes(ctx)
	if err != nil {
		return nil, m.agentErr(id, err)
	}
	if out == nil {
		out = []api.ProcessInfo{}
	}
	return out, nil
}

// ConnectProcess streams a process's output: what it printed so far (the
// last 1 MiB of each stream), then live output, then its exit. Closing the
// stream leaves the process running.
func (m *Manager) ConnectProcess(ctx context.Context, id string, pid int) (*ProcessStream, error) {
	b, err := m.get(id)
	if err != nil {
		return nil, err
	}
	return m.openStream(ctx, b, func(ctx context.Context) (*agentclient.Stream, error) {
		return b.agent.ProcessOutput(ctx, pid)
	})
}

// WriteStdin streams r into a process's stdin.
func (m *Manager) WriteStdin(ctx context.Context, id string, pid int, r io.Reader) error {
	a, err := m.agentFor(id)
	if err != nil {
		return err
	}
	return m.agentErrOrNil(id, a.WriteStdin(ctx, pid, r))
}

// CloseStdin closes a process's stdin.
func (m *Manager) CloseStdin(ctx context.Context, id string, pid int) error {
	a, err := m.agentFor(id)
	if err != nil {
		return err
	}
	return m.agentErrOrNil(id, a.CloseStdin(ctx, pid))
}

// SignalProcess sends a signal, by name (SIGTERM, TERM) or number, to a
// process's group.
func (m *Manager) SignalProcess(ctx context.Context, id string, pid int, signal string) error {
	if signal == "" {
		return errs.Invalid("signal is required")
	}
	a, err := m.agentFor(id)
	if err != nil {
		return err
	}
	return m.agentErrOrNil(id, a.Signal(ctx, pid, signal))
}

// KillProcess sends SIGKILL to a process's group.
func (m *Manager) KillProcess(ctx context.Context, id string, pid int) error {
	a, err := m.agentFor(id)
	if err != nil {
		return err
	}
	return m.agentErrOrNil(id, a.KillProcess(ctx, pid))
}
