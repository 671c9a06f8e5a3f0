package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"golang.org/x/term"
)

// progress shows a transfer on stderr: one updating line on a terminal,
// a line per quarter elsewhere. Small transfers show nothing.
type progress struct {
	w        io.Writer
	label    string
	total    int64
	tty      bool
	off      bool
	start    time.Time
	last     time.Time
	lastStep int64
	done     int64
}

func (a *app) progress(label string, total int64, quiet bool) *progress {
	p := &progress{w: a.io.err, label: label, total: total, start: time.Now()}
	if f, ok := a.io.err.(*os.File); ok {
		p.tty = term.IsTerminal(int(f.Fd()))
	}
	// Unknown sizes show progress once they turn big.
	p.off = quiet || (total >= 0 && total < progressFrom)
	return p
}

func (p *progress) update(done, total int64) {
	p.done = done
	if p.off || done < progressFrom && total < 0 {
		return
	}
	now := time.Now()
	if p.tty {
		if now.Sub(p.last) < 100*time.Millisecond && done != total {
			return
		}
		p.last = now
		fmt.Fprintf(p.w, "\r%s %s\x1b[K", p.label, p.line(done, now))
		return
	}
	// Not a terminal: one line per 25%, or per 64 MiB when the size is unknown.
	var step int64
	if total > 0 {
		step = done * 4 / total
	} else {
		step = done / (64 << 20)
	}
	if step > p.lastStep {
		p.lastStep = step
		fmt.Fprintf(p.w, "%s %s\n", p.label, p.line(done, now))
	}
}

func (p *progress) line(done int64, now time.Time) string {
	rate := float64(done) / max(now.Sub(p.start).Seconds(), 0.001)
	if p.total > 0 {
		return fmt.Sprintf("%s / %s %3d%% %s/s", size(done), size(p.total), done*100/p.total, size(int64(rate)))
	}
	return fmt.Sprintf("%s %s/s", size(done), size(int64(rate)))
}

// finish ends the progress display.
func (p *progress) finish(err error) {
	if p.off || (p.total < 0 && p.done < progressFrom) {
		return
	}
	if p.tty {
		fmt.Fprintln(p.w)
	}
	if err == nil {
		fmt.Fprintf(p.w, "%s done: %s in %s\n", p.label, size(p.done), time.Since(p.start).Round(time.Millisecond))
	}
}

// copyWithProgress copies r to w, reporting about every MiB.
func copyWithProgress(w io.Writer, r io.Reader, total int64, fn func(done, total int64)) error {
	buf := make([]byte, 256<<10)
	var done, last int64
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			done += int64(n)
			if done-last >= 1<<20 {
				last = done
				fn(done, total)
			}
		}
		if err == io.EOF {
			fn(done, total)
			if total >= 0 && done != total {
				return fmt.Errorf("got %d of %d bytes", done, total)
			}
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func octal(m os.FileMode) string { return fmt.Sprintf("%04o", uint32(m)) }

func parseOctal(s string) (os.FileMode, bool) {
	n, err := strconv.ParseUint(s, 8, 32)
	return os.FileMode(n) & os.ModePerm, err == nil
}
