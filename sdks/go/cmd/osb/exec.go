package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	opensandbox "github.com/opensandbox/opensandbox/sdks/go"
)

func runExec(ctx context.Context, a *app, args []string) error {
	fs := newFlags("exec", a.io.err)
	cwd := fs.String("cwd", "", "working directory")
	envs := kvFlag{}
	fs.Var(envs, "env", "environment variable K=V (repeatable)")
	var timeout durationFlag
	fs.Var(&timeout, "timeout", "kill the command after this long (server default: 60s)")
	stdin := fs.Bool("i", false, "send osb's standard input to the command")
	pos, argv, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := exactArgs(pos, "ID"); err != nil {
		return err
	}
	if len(argv) == 0 {
		return usagef("want a command after --")
	}
	opts := opensandbox.RunOptions{
		Cwd: *cwd, Envs: envs, Timeout: time.Duration(timeout),
		OnStdout: func(b []byte) { a.io.out.Write(b) },
		OnStderr: func(b []byte) { a.io.err.Write(b) },
	}
	// One word runs through the shell (`osb exec ID -- 'ls | wc -l'`); more
	// run as argv.
	cmd := argv[0]
	if len(argv) > 1 {
		opts.Args = argv[1:]
	}
	if *stdin {
		b, err := io.ReadAll(a.io.in)
		if err != nil {
			return fmt.Errorf("read stdin: %w", err)
		}
		opts.Stdin = string(b)
	}
	sbx, err := a.client.Connect(ctx, pos[0])
	if err != nil {
		return err
	}
	res, err := sbx.Commands().Run(ctx, cmd, opts)
	if errors.Is(err, opensandbox.ErrTimeout) && res != nil {
		fmt.Fprintf(a.io.err, "osb exec: the command ran out of time and was killed\n")
		return exitCode(res.ExitCode)
	}
	if err != nil {
		return err
	}
	return exitCode(res.ExitCode)
}
