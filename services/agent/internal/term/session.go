package term

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/opensandbox/opensandbox/services/agent/internal/drain"
	"github.com/opensandbox/opensandbox/services/agent/internal/proc"
	"github.com/opensandbox/opensandbox/services/agent/internal/ringbuf"
	"github.com/opensandbox/opensandbox/services/shared/agentapi"
)

// ScrollbackBytes is how much recent output a reconnecting client replays.
const ScrollbackBytes = 64 << 10

// drainGrace is how long the terminal may stay quiet after the shell exited
// before its output ends: a job left running in the background may hold the
// terminal open. What the shell wrote is read whatever the grace.
const drainGrace = 100 * time.Millisecond

// Session is one shell on one terminal.
type Session struct {
	ID        string
	PID       int
	Shell     string
	StartedAt time.Time

	master *os.File
	out    *ringbuf.Buffer

	inMu     sync.Mutex // one writer of input at a time, so keystrokes do not interleave
	bytesIn  atomic.Int64
	bytesOut atomic.Int64

	attachMu sync.Mutex
	attached *ringbuf.Reader // the one client following the output

	done     chan struct{} // closed when the shell exited and its output is complete
	mu       sync.Mutex
	exitCode int
	endedAt  time.Time
}

// Spec describes the shell of a new session.
type Spec struct {
	Shell      string
	Env        []string
	Dir        string
	Cols, Rows int
}

func newID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// start opens a terminal and runs the shell on it as the leader of a new
// session with the terminal as its controlling terminal, so that job
// control and Ctrl-C work as in any terminal.
func start(reaper *proc.Reaper, spec Spec) (*Session, error) {
	path, err := proc.LookPath(spec.Shell, proc.Getenv(spec.Env, "PATH"))
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(spec.Dir); err != nil || !fi.IsDir() {
		return nil, &os.PathError{Op: "chdir", Path: spec.Dir, Err: os.ErrNotExist}
	}
	master, slave, err := openPTY()
	if err != nil {
		return nil, err
	}
	defer slave.Close() // the shell keeps its own copies
	if err := setSize(master, spec.Cols, spec.Rows); err != nil {
		master.Close()
		return nil, err
	}
	pid, done, err := reaper.Start(path, []string{spec.Shell}, &syscall.ProcAttr{
		Dir:   spec.Dir,
		Env:   spec.Env,
		Files: []uintptr{slave.Fd(), slave.Fd(), slave.Fd()},
		Sys:   &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0},
	})
	if err != nil {
		master.Close()
		return nil, err
	}
	s := &Session{
		ID: newID(), PID: pid, Shell: spec.Shell, StartedAt: time.Now().UTC(),
		master: master, out: ringbuf.New(ScrollbackBytes), done: make(chan struct{}),
	}
	go s.run(done)
	return s, nil
}

// run copies terminal output into the scrollback until the shell is gone.
func (s *Session) run(exited <-chan syscall.WaitStatus) {
	pumped := make(chan struct{})
	after := make(chan struct{})
	go func() {
		defer close(pumped)
		defer s.out.Close()
		// Reading fails with EIO once the last holder of the terminal
		// closes it; that is the normal end.
		drain.Copy(countingWriter{s.out, &s.bytesOut}, s.master, after, drain.Options{Grace: drainGrace})
	}()
	ws := <-exited
	close(after)
	<-pumped
	s.master.Close()
	s.mu.Lock()
	s.exitCode = proc.ExitCode(ws)
	s.endedAt = time.Now().UTC()
	s.mu.Unlock()
	close(s.done)
}

// Done is closed when the shell has exited and all its output is kept.
func (s *Session) Done() <-chan struct{} { return s.done }

// Running reports whether the shell is still running.
func (s *Session) Running() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// Info describes the session.
func (s *Session) Info() agentapi.PTYInfo {
	info := agentapi.PTYInfo{
		ID: s.ID, PID: s.PID, Shell: s.Shell, StartedAt: s.StartedAt, Running: s.Running(),
		BytesIn: s.bytesIn.Load(), BytesOut: s.bytesOut.Load(),
	}
	if !info.Running {
		s.mu.Lock()
		info.ExitCode = s.exitCode
		end := s.endedAt
		info.EndedAt = &end
		s.mu.Unlock()
	}
	return info
}

// ExitCode is the shell's exit code; valid after Done.
func (s *Session) ExitCode() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exitCode
}

// Attach makes a new follower of the output, starting with the scrollback.
// It replaces the previous one: one client per session at a time.
func (s *Session) Attach() *ringbuf.Reader {
	r := s.out.NewReader(true)
	s.attachMu.Lock()
	old := s.attached
	s.attached = r
	s.attachMu.Unlock()
	if old != nil {
		old.Close()
	}
	return r
}

// Detach drops r if it is still the attached follower.
func (s *Session) Detach(r *ringbuf.Reader) {
	s.attachMu.Lock()
	if s.attached == r {
		s.attached = nil
	}
	s.attachMu.Unlock()
	r.Close()
}

// ErrEnded is returned for input to a session whose shell has exited.
var ErrEnded = errors.New("the shell has exited")

// Write sends keystrokes to the shell.
func (s *Session) Write(ctx context.Context, p []byte) error {
	if !s.Running() {
		return ErrEnded
	}
	s.inMu.Lock()
	defer s.inMu.Unlock()
	// A shell that stops reading fills the terminal's input queue; ctx lets
	// the caller give up instead of blocking forever.
	stop := context.AfterFunc(ctx, func() { s.master.SetWriteDeadline(time.Now()) })
	defer stop()
	defer s.master.SetWriteDeadline(time.Time{})
	n, err := s.master.Write(p)
	s.bytesIn.Add(int64(n))
	if err != nil && (errors.Is(err, os.ErrClosed) || errors.Is(err, syscall.EIO)) {
		return ErrEnded
	}
	return err
}

// Resize changes the terminal size.
func (s *Session) Resize(cols, rows int) error {
	if !s.Running() {
		return ErrEnded
	}
	return setSize(s.master, cols, rows)
}

// Kill ends every process of the shell's session, not only its process
// group: job control puts each job in a group of its own.
func (s *Session) Kill() {
	if !s.Running() {
		return
	}
	killSession(s.PID)
}

// killSession sends SIGKILL to every process whose session id is sid.
func killSession(sid int) {
	proc.KillGroup(sid, syscall.SIGKILL)
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, ok := atoiPositive(e.Name())
		if !ok {
			continue
		}
		if s, _, errno := syscall.RawSyscall(syscall.SYS_GETSID, uintptr(pid), 0, 0); errno == 0 && int(s) == sid {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func atoiPositive(s string) (int, bool) {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, n > 0
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}
