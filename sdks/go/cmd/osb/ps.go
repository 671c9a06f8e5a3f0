package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	opensandbox "github.com/opensandbox/opensandbox/sdks/go"
)

func runPS(ctx context.Context, a *app, args []string) error {
	fs := newFlags("ps", a.io.err)
	asJSON := fs.Bool("json", false, "print JSON")
	sbx, _, _, err := a.parseSandbox(ctx, fs, args, "ID")
	if err != nil {
		return err
	}
	procs, err := sbx.Commands().List(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		if procs == nil {
			procs = []opensandbox.ProcessInfo{}
		}
		return printJSON(a.io.out, procs)
	}
	now := time.Now()
	t := newTable(a.io.out, "PID", "STATUS", "STARTED", "TAG", "COMMAND")
	for _, p := range procs {
		status := "running"
		if !p.Running {
			status = "exited"
			if p.ExitCode != nil {
				status = fmt.Sprintf("exited (%d)", *p.ExitCode)
			}
		}
		tag := p.Tag
		if tag == "" {
			tag = "-"
		}
		t.row(strconv.Itoa(p.PID), status, ago(now, p.StartedAt), tag, strings.Join(append([]string{p.Cmd}, p.Args...), " "))
	}
	return t.flush()
}
