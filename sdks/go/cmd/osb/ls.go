package main

import (
	"context"
	"time"

	opensandbox "github.com/opensandbox/opensandbox/sdks/go"
)

func runList(ctx context.Context, a *app, args []string) error {
	fs := newFlags("ls", a.io.err)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, _, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := exactArgs(pos); err != nil {
		return err
	}
	list, err := a.client.List(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		if list == nil {
			list = []opensandbox.SandboxInfo{}
		}
		return printJSON(a.io.out, list)
	}
	now := time.Now()
	t := newTable(a.io.out, "ID", "TEMPLATE", "STATUS", "STARTED", "ENDS")
	for _, s := range list {
		t.row(s.SandboxID, s.TemplateID, s.Status, ago(now, s.StartedAt), in(now, s.EndAt))
	}
	return t.flush()
}
