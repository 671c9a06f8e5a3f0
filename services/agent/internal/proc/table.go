package proc

import (
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/opensandbox/opensandbox/services/agent/internal/ringbuf"
)

// Limits of the process table. Finished processes are kept so that a client
// can still read how they ended, but only a few and not for long: their
// output counts against the sandbox's memory.
const (
	maxRunning   = 1024
	maxFinished  = 32
	keepFinished = 10 * time.Minute
)

// ErrTooMany is returned when too many managed processes run at once.
var ErrTooMany = errors.New("too many managed processes")

// StartOptions tunes a managed process.
type StartOptions struct {
	Cmd, Cwd, Tag string
	Args          []string
	Stdin         []byte
	KeepStdin     bool          // leave stdin open after writing Stdin
	Timeout       time.Duration // 0: none
	Follow        bool          // return a follower attached before any output
}

// Table holds the managed processes of the agent.
type Table struct {
	reaper *Reaper
	mu     sync.Mutex
	procs  map[int]*Process
}

// NewTable returns an empty table that starts processes through reaper.
func NewTable(reaper *Reaper) *Table {
	return &Table{reaper: reaper, procs: map[int]*Process{}}
}

// Start starts a managed process. With opts.Follow the returned follower
// was in place before the process could write, so it misses nothing.
func (t *Table) Start(spec Spec, opts StartOptions) (*Process, *Follower, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.gcLocked()
	running := 0
	for _, p := range t.procs {
		if p.Running() {
			running++
		}
	}
	if running >= maxRunning {
		return nil, nil, ErrTooMany
	}
	pp, err := t.reaper.startPiped(spec)
	if err != nil {
		return nil, nil, err
	}
	p := &Process{
		PID: pp.pid, Argv: spec.Argv, Cmd: opts.Cmd, Args: opts.Args, Cwd: spec.Dir, Tag: opts.Tag,
		StartedAt: time.Now().UTC(),
		Stdout:    ringbuf.New(ReplayBytes),
		Stderr:    ringbuf.New(ReplayBytes),
		stdin:     pp.stdin,
		done:      make(chan struct{}),
	}
	var f *Follower
	if opts.Follow {
		f = p.Follow(true)
	}
	// A pid is unique among running processes; an old finished entry with
	// the same pid is replaced.
	t.procs[p.PID] = p
	go p.supervise(pp, opts.Timeout)
	if len(opts.Stdin) > 0 || !opts.KeepStdin {
		go func() {
			if len(opts.Stdin) > 0 {
				p.stdinMu.Lock()
				if p.stdin != nil {
					p.stdin.Write(opts.Stdin)
				}
				p.stdinMu.Unlock()
			}
			if !opts.KeepStdin {
				p.CloseStdin()
			}
		}()
	}
	return p, f, nil
}

// Get returns the process with pid.
func (t *Table) Get(pid int) (*Process, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.procs[pid]
	return p, ok
}

// List returns the processes, oldest first.
func (t *Table) List() []*Process {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.gcLocked()
	out := make([]*Process, 0, len(t.procs))
	for _, p := range t.procs {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].StartedAt.Before(out[j].StartedAt) })
	return out
}

// Running counts the processes that have not finished.
func (t *Table) Running() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, p := range t.procs {
		if p.Running() {
			n++
		}
	}
	return n
}

// gcLocked forgets finished processes beyond the limits; t.mu held.
func (t *Table) gcLocked() {
	var finished []*Process
	for pid, p := range t.procs {
		if p.Running() {
			continue
		}
		if time.Since(p.ended()) > keepFinished {
			delete(t.procs, pid)
			continue
		}
		finished = append(finished, p)
	}
	if len(finished) <= maxFinished {
		return
	}
	sort.Slice(finished, func(i, j int) bool { return finished[i].ended().Before(finished[j].ended()) })
	for _, p := range finished[:len(finished)-maxFinished] {
		delete(t.procs, p.PID)
	}
}
