package proc

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"
)

// Spec describes a process to start.
type Spec struct {
	Argv []string // Argv[0] is looked up in PATH of Env
	Env  []string
	Dir  string
}

// Result is a finished command.
type Result struct {
	ExitCode        int
	Stdout, Stderr  []byte
	StdoutTruncated bool
	StderrTruncated bool
	TimedOut        bool
	Duration        time.Duration
}

// ErrNotFound is returned when the executable does not exist.
var ErrNotFound = errors.New("executable not found")

// drainGrace bounds how long output is read after the process exits; a
// background grandchild that keeps the pipe open must not hold the answer.
const drainGrace = 100 * time.Millisecond

// Run starts spec in its own process group, feeds stdin, captures at most
// maxOutput bytes of each stream and kills the whole group at timeout.
func (r *Reaper) Run(spec Spec, stdin []byte, timeout time.Duration, maxOutput int) (*Result, error) {
	path, err := LookPath(spec.Argv[0], Getenv(spec.Env, "PATH"))
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, spec.Argv[0])
	}
	if fi, err := os.Stat(spec.Dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("cwd %q: %w", spec.Dir, os.ErrNotExist)
	}

	var closers []*os.File
	closeAll := func() {
		for _, f := range closers {
			f.Close()
		}
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		return nil, err
	}
	closers = append(closers, inR, outW, errW)

	start := time.Now()
	pid, done, err := r.Start(path, spec.Argv, &syscall.ProcAttr{
		Dir:   spec.Dir,
		Env:   spec.Env,
		Files: []uintptr{inR.Fd(), outW.Fd(), errW.Fd()},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	})
	closeAll() // the child holds its own copies now
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		return nil, err
	}

	go func() {
		if len(stdin) > 0 {
			inW.Write(stdin)
		}
		inW.Close()
	}()

	stdout := &cappedBuffer{max: maxOutput}
	stderr := &cappedBuffer{max: maxOutput}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); io.Copy(stdout, outR) }()
	go func() { defer wg.Done(); io.Copy(stderr, errR) }()

	res := &Result{}
	var timer <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		timer = t.C
	}
	var ws syscall.WaitStatus
	select {
	case ws = <-done:
	case <-timer:
		res.TimedOut = true
		syscall.Kill(-pid, syscall.SIGKILL)
		ws = <-done
	}
	if res.TimedOut {
		// Whatever else the group started dies with it.
		syscall.Kill(-pid, syscall.SIGKILL)
	}
	res.Duration = time.Since(start)
	inW.Close() // unblocks a stdin writer the process never read

	deadline := time.Now().Add(drainGrace)
	outR.SetReadDeadline(deadline)
	errR.SetReadDeadline(deadline)
	wg.Wait()
	outR.Close()
	errR.Close()

	res.ExitCode = ExitCode(ws)
	if res.TimedOut {
		res.ExitCode = 124
	}
	res.Stdout, res.StdoutTruncated = stdout.buf, stdout.truncated
	res.Stderr, res.StderrTruncated = stderr.buf, stderr.truncated
	return res, nil
}

// cappedBuffer keeps the first max bytes and counts the rest as truncated,
// still consuming them so the writer never blocks.
type cappedBuffer struct {
	buf       []byte
	max       int
	truncated bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	room := b.max - len(b.buf)
	if room < len(p) {
		b.truncated = true
		if room > 0 {
			b.buf = append(b.buf, p[:room]...)
		}
		return len(p), nil
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}
