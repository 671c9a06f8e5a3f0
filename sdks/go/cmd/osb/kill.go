package main

import (
	"context"
	"errors"
	"fmt"

	opensandbox "github.com/opensandbox/opensandbox/sdks/go"
)

func runKill(ctx context.Context, a *app, args []string) error {
	fs := newFlags("kill", a.io.err)
	pos, _, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("want at least one sandbox id")
	}
	var errs []error
	for _, id := range pos {
		sbx, err := a.client.Connect(ctx, id)
		if err == nil {
			var killed bool
			if killed, err = sbx.Kill(ctx); err == nil && !killed {
				err = opensandbox.ErrSandboxGone // gone between the two calls
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", id, err))
			continue
		}
		fmt.Fprintln(a.io.out, id)
	}
	return errors.Join(errs...)
}
