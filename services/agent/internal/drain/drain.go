// Package drain copies a child process's output without losing what it
// wrote before it exited.
//
// Once a process has exited, everything it wrote sits in its pipe (a write
// to a pipe returns only once the bytes are in the pipe's buffer). What may
// still come after is from its background descendants that hold the pipe
// open, and waiting for them must be bounded. An earlier version bounded it
// with a read deadline alone: under CPU pressure the reader ran only after
// the deadline had passed, its read failed at once, and the output that was
// already in the pipe was dropped — answers with exit code 0 and an empty
// stdout. Here the deadline ends only the wait for more; what is in the pipe
// is always read.
package drain

import (
	"errors"
	"io"
	"os"
	"syscall"
	"time"
)

// Options bound what is read after the process exited.
type Options struct {
	// Grace is how long the pipe may stay quiet after the exit before the
	// copy ends (descendants holding it open do not hold the caller).
	Grace time.Duration
	// MaxAfterExit bounds the bytes read after the exit beyond what was in
	// the pipe then (a descendant that keeps printing); 0 means 4 MiB.
	MaxAfterExit int
}

const defaultMaxAfterExit = 4 << 20

// Copy copies src into dst until src reaches end of file, dst fails, or,
// once exited is closed, src stays quiet for opts.Grace. src must be a
// non-blocking file registered with Go's poller (os.Pipe and a pty master
// opened with O_NONBLOCK are). Copy returns the error of dst, if any.
func Copy(dst io.Writer, src *os.File, exited <-chan struct{}, opts Options) error {
	limit := opts.MaxAfterExit
	if limit <= 0 {
		limit = defaultMaxAfterExit
	}
	// A read already blocked when the process exits must learn of it.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-exited:
			src.SetReadDeadline(time.Now().Add(opts.Grace))
		case <-stop:
		}
	}()

	buf := make([]byte, 32<<10)
	after := -1 // bytes read since the exit; -1 while running
	for {
		if after < 0 {
			select {
			case <-exited:
				after = 0
			default:
			}
		}
		if after >= 0 {
			if after > limit {
				return nil
			}
			src.SetReadDeadline(time.Now().Add(opts.Grace))
		}
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
			if after >= 0 {
				after += n
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			// Quiet for the grace, or this goroutine ran late: either way
			// take what the pipe holds now, without waiting.
			return drainNow(dst, src, buf, limit)
		default:
			return nil // EOF, or EIO once a terminal's last holder closed it
		}
	}
}

// drainNow reads what src holds right now, up to limit bytes.
func drainNow(dst io.Writer, src *os.File, buf []byte, limit int) error {
	if err := src.SetReadDeadline(time.Time{}); err != nil {
		return nil
	}
	rc, err := src.SyscallConn()
	if err != nil {
		return nil
	}
	var werr error
	rc.Read(func(fd uintptr) bool {
		for total := 0; total <= limit; {
			n, err := syscall.Read(int(fd), buf)
			if n > 0 {
				if _, werr = dst.Write(buf[:n]); werr != nil {
					return true
				}
				total += n
				continue
			}
			if err == syscall.EINTR {
				continue
			}
			return true // EAGAIN: empty for now; 0: end of file; or an error
		}
		return true
	})
	return werr
}
