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
	sbx, err := a.client.Connect(ctx, pos[0])
	if err != nil {
		return err
	}
	var res *opensandbox.CommandResult
	if *stdin {
		res, err = runWithStdin(ctx, sbx.Commands(), cmd, opts, a.io.in, a.io.err)
	} else {
		res, err = sbx.Commands().Run(ctx, cmd, opts)
	}
	if errors.Is(err, opensandbox.ErrTimeout) && res != nil {
		fmt.Fprintf(a.io.err, "osb exec: the command ran out of time and was killed\n")
		return exitCode(res.ExitCode)
	}
	if err != nil {
		return err
	}
	return exitCode(res.ExitCode)
}

// runWithStdin streams in to the command's stdin as it is read, binary-safe
// and without holding it: the command runs as a process whose output is
// followed while the input goes to it. It is killed if osb is interrupted.
func runWithStdin(ctx context.Context, cmds *opensandbox.Commands, cmd string, opts opensandbox.RunOptions, in io.Reader, errOut io.Writer) (*opensandbox.CommandResult, error) {
	if opts.Timeout == 0 {
		opts.Timeout = time.Minute // what Run gets by default
	}
	h, err := cmds.Start(ctx, cmd, opts)
	if err != nil {
		return nil, err
	}
	defer h.Disconnect()
	fed := make(chan error, 1)
	go func() { fed <- feed(ctx, h, in) }()
	res, err := h.Wait(ctx)
	if ctx.Err() != nil {
		_ = h.Kill(context.WithoutCancel(ctx))
	}
	if err != nil {
		return res, err
	}
	select {
	case ferr := <-fed:
		if ferr != nil && !errors.Is(ferr, opensandbox.ErrNotFound) {
			fmt.Fprintf(errOut, "osb exec: stdin: %v\n", ferr)
		}
	default: // the command ended without reading all of its input
	}
	return res, nil
}

// feed copies in to the process's stdin, then closes it.
func feed(ctx context.Context, h *opensandbox.CommandHandle, in io.Reader) error {
	buf := make([]byte, 256<<10)
	for {
		n, err := in.Read(buf)
		if n > 0 {
			if serr := h.SendStdin(ctx, buf[:n]); serr != nil {
				return serr
			}
		}
		if err == io.EOF {
			return h.CloseStdin(ctx)
		}
		if err != nil {
			return err
		}
	}
}
