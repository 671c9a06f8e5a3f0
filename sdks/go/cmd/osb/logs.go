package main

import (
	"context"
	"strconv"

	opensandbox "github.com/opensandbox/opensandbox/sdks/go"
)

// runLogs prints what a process printed so far, then follows it until it exits.
func runLogs(ctx context.Context, a *app, args []string) error {
	fs := newFlags("logs", a.io.err)
	sbx, pos, _, err := a.parseSandbox(ctx, fs, args, "ID", "PID")
	if err != nil {
		return err
	}
	pid, err := strconv.Atoi(pos[1])
	if err != nil || pid <= 0 {
		return usagef("PID must be a positive number, got %q", pos[1])
	}
	h, err := sbx.Commands().Connect(ctx, pid, opensandbox.ConnectOptions{
		OnStdout: func(b []byte) { a.io.out.Write(b) },
		OnStderr: func(b []byte) { a.io.err.Write(b) },
	})
	if err != nil {
		return err
	}
	defer h.Disconnect()
	_, err = h.Wait(ctx)
	return err
}
