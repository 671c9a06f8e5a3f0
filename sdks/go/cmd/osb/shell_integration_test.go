//go:build integration

package main

import (
	"errors"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// TestCLIShell drives `osb shell` through a real pseudo-terminal: type a
// command, read its output, resize the terminal, exit with a code, and find
// the terminal restored.
func TestCLIShell(t *testing.T) {
	t.Parallel()
	id := sandbox(t, "base")
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	defer tty.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 24, Cols: 80}); err != nil {
		t.Fatal(err)
	}
	before, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(osbBin, "shell", id)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	var screen lockedBuffer
	go func() { _, _ = ptmxCopy(&screen, ptmx) }()

	type_ := func(s string) {
		t.Helper()
		if _, err := ptmx.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	type_("stty size\r")
	screen.waitFor(t, 0, "24 80")
	// osb put the terminal in raw mode while the shell runs.
	eventuallyTermios(t, tty, func(tio *unix.Termios) bool { return tio.Lflag&unix.ICANON == 0 && tio.Lflag&unix.ECHO == 0 })

	// Resizing sends osb SIGWINCH; the remote terminal follows. The resize
	// travels on its own, so ask again until the new size shows.
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 40, Cols: 100}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		from := len(screen.String())
		type_("stty size\r")
		if waitShort(&screen, from, "40 100", time.Second) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the remote terminal never became 40x100: %q", screen.String())
		}
	}

	type_("echo done-$((40+2)); exit 5\r")
	screen.waitFor(t, 0, "done-42")
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	select {
	case err := <-waitErr:
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 5 {
			t.Fatalf("osb shell ended with %v, want exit code 5", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("osb shell did not exit after the shell did")
	}
	after, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if after.Lflag != before.Lflag || after.Iflag != before.Iflag || after.Oflag != before.Oflag {
		t.Fatalf("terminal not restored: lflag %#x iflag %#x oflag %#x, was %#x %#x %#x",
			after.Lflag, after.Iflag, after.Oflag, before.Lflag, before.Iflag, before.Oflag)
	}
}

// ptmxCopy copies the terminal's output until it closes.
func ptmxCopy(dst *lockedBuffer, src interface{ Read([]byte) (int, error) }) (int64, error) {
	buf := make([]byte, 4096)
	var n int64
	for {
		k, err := src.Read(buf)
		if k > 0 {
			dst.Write(buf[:k])
			n += int64(k)
		}
		if err != nil {
			return n, err
		}
	}
}

// waitShort reports whether want shows in the output after from within d.
func waitShort(b *lockedBuffer, from int, want string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if s := b.String(); len(s) >= from && strings.Contains(s[from:], want) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func eventuallyTermios(t *testing.T, tty interface{ Fd() uintptr }, ok func(*unix.Termios) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		tio, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
		if err == nil && ok(tio) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("terminal mode never matched: %+v, %v", tio, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
