// Package proc starts processes and reaps every child of the agent.
//
// As PID 1 the agent inherits orphans, so it must wait on any pid. Go's os/exec
// waits on its own children and would race with such a reaper, so processes are
// started here with syscall.ForkExec and one goroutine owns all wait4 calls.
package proc

import (
	"context"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Reaper starts processes and delivers their exit status.
type Reaper struct {
	mu      sync.Mutex
	waiters map[int]chan syscall.WaitStatus
}

// NewReaper returns a reaper; call Reap to start reaping.
func NewReaper() *Reaper {
	return &Reaper{waiters: make(map[int]chan syscall.WaitStatus)}
}

// Start forks and execs argv0 and returns a channel that receives the exit status once.
func (r *Reaper) Start(argv0 string, argv []string, attr *syscall.ProcAttr) (int, <-chan syscall.WaitStatus, error) {
	// Holding the lock across fork and registration means the reaper cannot
	// collect this pid before it has a waiter.
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := syscall.ForkExec(argv0, argv, attr)
	if err != nil {
		return 0, nil, err
	}
	preferForOOM(pid)
	ch := make(chan syscall.WaitStatus, 1)
	r.waiters[pid] = ch
	return pid, ch, nil
}

// Running returns the pids started through Start that have not exited.
func (r *Reaper) Running() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	pids := make([]int, 0, len(r.waiters))
	for pid := range r.waiters {
		pids = append(pids, pid)
	}
	return pids
}

// Reap reaps children until ctx ends.
func (r *Reaper) Reap(ctx context.Context) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGCHLD)
	defer signal.Stop(sig)
	// A periodic sweep guards against a SIGCHLD that arrived before Notify.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		r.reapAll()
		select {
		case <-ctx.Done():
			return
		case <-sig:
		case <-tick.C:
		}
	}
}

func (r *Reaper) reapAll() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
		r.mu.Lock()
		ch, ok := r.waiters[pid]
		delete(r.waiters, pid)
		r.mu.Unlock()
		if ok {
			ch <- ws
		}
	}
}

// ExitCode turns a wait status into a shell-style exit code.
func ExitCode(ws syscall.WaitStatus) int {
	switch {
	case ws.Exited():
		return ws.ExitStatus()
	case ws.Signaled():
		return 128 + int(ws.Signal())
	default:
		return -1
	}
}

// preferForOOM makes a child the OOM killer's first choice over the agent:
// at oom_score_adj 1000 its badness is at least the whole memory, more
// than the agent's own use can be, so a sandbox out of memory loses the
// command that filled it and never its PID 1. Raising a score needs no
// privilege (lowering the agent's would need CAP_SYS_RESOURCE, which hosts
// like our CI's lack). A child that forks within the microseconds before
// this write leaves its own children at the default; that can only put
// its own sandbox at risk.
func preferForOOM(pid int) {
	f, err := os.OpenFile("/proc/"+strconv.Itoa(pid)+"/oom_score_adj", os.O_WRONLY, 0)
	if err != nil {
		return
	}
	f.WriteString("1000")
	f.Close()
}
