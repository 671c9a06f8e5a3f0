package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	opensandbox "github.com/opensandbox/opensandbox/sdks/go"
	"golang.org/x/term"
)

// runShell opens a terminal in the sandbox and connects it to osb's own:
// raw mode while it runs, the remote size following the local one.
func runShell(ctx context.Context, a *app, args []string) error {
	fs := newFlags("shell", a.io.err)
	shell := fs.String("shell", "", "shell to run (server default: bash, else sh)")
	sbx, _, _, err := a.parseSandbox(ctx, fs, args, "ID")
	if err != nil {
		return err
	}
	fd := int(a.io.in.Fd())
	tty := term.IsTerminal(fd)
	cols, rows := 80, 24
	if tty {
		if w, h, err := term.GetSize(fd); err == nil && w > 0 && h > 0 {
			cols, rows = w, h
		}
	}
	h, err := sbx.PTY().CreateWithOptions(ctx, opensandbox.PTYOptions{
		Cols: cols, Rows: rows, Shell: *shell,
		OnData: func(b []byte) { a.io.out.Write(b) },
	})
	if err != nil {
		return err
	}
	defer h.Close()
	if tty {
		state, err := term.MakeRaw(fd)
		if err != nil {
			h.Kill(context.WithoutCancel(ctx))
			return fmt.Errorf("raw mode: %w", err)
		}
		defer term.Restore(fd, state)
		stop := onResize(func() {
			if w, hh, err := term.GetSize(fd); err == nil {
				h.Resize(ctx, w, hh)
			}
		})
		defer stop()
	}
	go pump(ctx, a.io.in, h)
	code, err := h.Wait(ctx)
	if err != nil {
		if ctx.Err() != nil {
			h.Kill(context.WithoutCancel(ctx))
		}
		return err
	}
	return exitCode(code)
}

// pump sends what is typed to the terminal until input ends.
func pump(ctx context.Context, in io.Reader, h *opensandbox.PTYHandle) {
	buf := make([]byte, 32<<10)
	for {
		n, err := in.Read(buf)
		if n > 0 {
			if serr := h.Send(ctx, buf[:n]); serr != nil {
				return
			}
		}
		if errors.Is(err, io.EOF) {
			// End of input (not a terminal): like typing Ctrl-D.
			h.Send(ctx, []byte{4})
			return
		}
		if err != nil {
			return
		}
	}
}
