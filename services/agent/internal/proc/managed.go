package proc

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/opensandbox/opensandbox/services/agent/internal/drain"
	"github.com/opensandbox/opensandbox/services/agent/internal/ringbuf"
)

// ReplayBytes is how much of each output stream a managed process keeps for
// clients that connect later.
const ReplayBytes = 1 << 20

// postExitRead bounds what is still read from the pipes after the process
// exited: a background grandchild that keeps writing must not keep the
// stream open forever.
const postExitRead = 4 << 20

// ErrStdinClosed is returned for stdin writes after stdin was closed.
var ErrStdinClosed = errors.New("stdin is closed")

// ErrExited is returned for operations that need a running process.
var ErrExited = errors.New("process has exited")

// Process is a managed process: its output is kept (bounded) for replay and
// followed live, and it takes stdin and signals until it exits.
type Process struct {
	PID       int
	Argv      []string
	Cmd       string   // as requested
	Args      []string // as requested
	Cwd       string
	Tag       string
	StartedAt time.Time

	Stdout *ringbuf.Buffer
	Stderr *ringbuf.Buffer

	stdinMu sync.Mutex
	stdin   *os.File // nil once closed

	done     chan struct{} // closed when exited and all output is in the buffers
	mu       sync.Mutex
	exitCode int
	timedOut bool
	endedAt  time.Time
}

// Done is closed once the process exited and its output is complete.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exit returns the exit code and whether the timeout killed it; valid after Done.
func (p *Process) Exit() (code int, timedOut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitCode, p.timedOut
}

// Running reports whether the process has not finished yet.
func (p *Process) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func (p *Process) ended() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.endedAt
}

// WriteStdin copies r into the process's stdin until r ends or ctx is done.
// Writes from concurrent callers do not interleave.
func (p *Process) WriteStdin(ctx context.Context, r io.Reader) error {
	p.stdinMu.Lock()
	defer p.stdinMu.Unlock()
	if p.stdin == nil {
		return ErrStdinClosed
	}
	f := p.stdin
	stop := context.AfterFunc(ctx, func() { f.SetWriteDeadline(time.Now()) })
	defer stop()
	defer f.SetWriteDeadline(time.Time{})
	_, err := io.Copy(f, r)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, syscall.EPIPE) {
		return ErrStdinClosed // the process closed its end
	}
	return err
}

// CloseStdin closes the process's stdin; closing twice is not an error.
func (p *Process) CloseStdin() {
	p.stdinMu.Lock()
	defer p.stdinMu.Unlock()
	if p.stdin != nil {
		p.stdin.Close()
		p.stdin = nil
	}
}

// Signal sends sig to the process group.
func (p *Process) Signal(sig syscall.Signal) error {
	if !p.Running() {
		return ErrExited
	}
	return KillGroup(p.PID, sig)
}

// Kill sends SIGKILL to the process group; a finished process is left alone.
func (p *Process) Kill() {
	if p.Running() {
		KillGroup(p.PID, syscall.SIGKILL)
	}
}

// Follower reads both output streams of a process.
type Follower struct {
	p              *Process
	out, err       *ringbuf.Reader
	outEOF, errEOF bool
	preferErr      bool
}

// Follow returns a follower from the oldest kept output (replay) or from
// now. The process waits for it: a follower that stops reading stops the
// process's output (its pipes fill). Only the owner of a streamed run
// follows; anybody else observes.
func (p *Process) Follow(replay bool) *Follower {
	return &Follower{p: p, out: p.Stdout.NewReader(replay), err: p.Stderr.NewReader(replay)}
}

// Observe returns a follower from the oldest kept output that the process
// never waits for: once it falls more than ReplayBytes behind on a stream,
// Next fails with ringbuf.ErrLagged.
func (p *Process) Observe() *Follower {
	return &Follower{p: p, out: p.Stdout.NewObserver(true), err: p.Stderr.NewObserver(true)}
}

// Close stops following; the process no longer waits for this reader.
func (f *Follower) Close() {
	f.out.Close()
	f.err.Close()
}

// Next reads the next chunk of output into buf and says from which stream
// (1 stdout, 2 stderr). It returns io.EOF once both streams are complete;
// then Exit of the process is valid. Order is kept within each stream; the
// streams take turns so that neither starves the other.
func (f *Follower) Next(ctx context.Context, buf []byte) (stream, n int, err error) {
	for {
		outCh, errCh := f.out.Wait(), f.err.Wait()
		for i := range 2 {
			useErr := f.preferErr != (i == 1)
			r, eof, id := f.out, &f.outEOF, 1
			if useErr {
				r, eof, id = f.err, &f.errEOF, 2
			}
			if *eof {
				continue
			}
			n, err := r.Read(buf)
			if err == io.EOF {
				*eof = true
				continue
			}
			if err != nil {
				return 0, 0, err
			}
			if n > 0 {
				f.preferErr = !useErr
				return id, n, nil
			}
		}
		if f.outEOF && f.errEOF {
			<-f.p.done
			return 0, 0, io.EOF
		}
		select {
		case <-outCh:
		case <-errCh:
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		}
	}
}

// supervise waits for the process, enforces its timeout, drains its output
// and records how it ended.
func (p *Process) supervise(pp *piped, timeout time.Duration) {
	var pumped sync.WaitGroup
	exited := make(chan struct{})
	pump := func(src *os.File, dst *ringbuf.Buffer) {
		defer pumped.Done()
		defer src.Close()
		defer dst.Close()
		drain.Copy(dst, src, exited, drain.Options{Grace: drainGrace, MaxAfterExit: postExitRead})
	}
	pumped.Add(2)
	go pump(pp.stdout, p.Stdout)
	go pump(pp.stderr, p.Stderr)

	ws, timedOut := waitOrKill(pp.pid, pp.done, timeout, nil)
	close(exited)
	p.CloseStdin()
	pumped.Wait()

	p.mu.Lock()
	p.exitCode = ExitCode(ws)
	if timedOut {
		p.exitCode = 124
		p.timedOut = true
	}
	p.endedAt = time.Now()
	p.mu.Unlock()
	close(p.done)
}
