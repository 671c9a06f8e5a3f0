package proc

import (
	"context"
	"errors"
	"sync"
	"syscall"
	"time"

	"github.com/opensandbox/opensandbox/services/agent/internal/drain"
)

// Spec describes a process to start.
type Spec struct {
	Argv []string // Argv[0] is looked up in PATH of Env
	Env  []string
	Dir  string
}

// Result is a finished command. Release it once its output has been sent:
// the output's reservation in the budget is held until then.
type Result struct {
	ExitCode       int
	Stdout, Stderr *Output
	TimedOut       bool
	Duration       time.Duration
	held           *held
}

// Release returns the output's room to the budget.
func (r *Result) Release() { r.held.Release() }

// ErrNotFound is returned when the executable does not exist.
var ErrNotFound = errors.New("executable not found")

// drainGrace is how long the output pipes may stay quiet after the process
// exited: a background grandchild that keeps them open must not hold the
// answer. What the process itself wrote is read whatever the grace.
const drainGrace = 100 * time.Millisecond

// Run starts spec in its own process group, feeds stdin, captures at most
// maxOutput bytes of each stream (within budget, which may be nil for no
// bound) and kills the whole group at timeout. When ctx ends first (the
// caller hung up), the group is killed too and Run returns ctx's error once
// the process is reaped.
func (r *Reaper) Run(ctx context.Context, spec Spec, stdin []byte, timeout time.Duration, maxOutput int, budget *Budget) (*Result, error) {
	start := time.Now()
	p, err := r.startPiped(spec)
	if err != nil {
		return nil, err
	}
	pid, done, inW, outR, errR := p.pid, p.done, p.stdin, p.stdout, p.stderr

	go func() {
		if len(stdin) > 0 {
			inW.Write(stdin)
		}
		inW.Close()
	}()

	// Waiting for room in the budget ends with the command's own time.
	hctx, hcancel := context.WithCancel(ctx)
	if timeout > 0 {
		hctx, hcancel = context.WithTimeout(ctx, timeout)
	}
	defer hcancel()
	h := &held{budget: budget, ctx: hctx, max: maxOutput}
	stdout, stderr := &Output{h: h}, &Output{h: h}
	exited := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); drain.Copy(stdout, outR, exited, drain.Options{Grace: drainGrace}) }()
	go func() { defer wg.Done(); drain.Copy(stderr, errR, exited, drain.Options{Grace: drainGrace}) }()

	res := &Result{}
	var ws syscall.WaitStatus
	ws, res.TimedOut = waitOrKill(pid, done, timeout, ctx.Done())
	if res.TimedOut || ctx.Err() != nil {
		// Whatever else the group started dies with it.
		syscall.Kill(-pid, syscall.SIGKILL)
	}
	res.Duration = time.Since(start)
	inW.Close() // unblocks a stdin writer the process never read

	close(exited)
	wg.Wait()
	outR.Close()
	errR.Close()

	if err := ctx.Err(); err != nil {
		h.Release()
		return nil, err
	}
	res.ExitCode = ExitCode(ws)
	if res.TimedOut {
		res.ExitCode = 124
	}
	res.Stdout, res.Stderr, res.held = stdout, stderr, h
	return res, nil
}

// waitOrKill waits for the exit status of pid, killing its process group
// once timeout (if positive) has passed or when cancel (if not nil) closes.
func waitOrKill(pid int, done <-chan syscall.WaitStatus, timeout time.Duration, cancel <-chan struct{}) (ws syscall.WaitStatus, timedOut bool) {
	var expired <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	select {
	case ws = <-done:
		return ws, false
	case <-expired:
		KillGroup(pid, syscall.SIGKILL)
		return <-done, true
	case <-cancel:
		KillGroup(pid, syscall.SIGKILL)
		return <-done, false
	}
}
