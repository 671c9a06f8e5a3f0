package main

import (
	"context"
	"fmt"
	"time"

	opensandbox "github.com/opensandbox/opensandbox/sdks/go"
)

func runCreate(ctx context.Context, a *app, args []string) error {
	fs := newFlags("create", a.io.err)
	template := fs.String("template", "", "template name or image (server default: base)")
	var timeout durationFlag
	fs.Var(&timeout, "timeout", "lifetime, e.g. 10m or 600 (server default: 5m)")
	envs, meta := kvFlag{}, kvFlag{}
	fs.Var(envs, "env", "environment variable K=V (repeatable)")
	fs.Var(meta, "metadata", "metadata K=V (repeatable)")
	cpus := fs.Int("cpu", 0, "CPU count")
	mem := fs.Int("memory", 0, "memory in MB")
	disk := fs.Int("disk", 0, "disk limit in MB (server default: 10240)")
	network := fs.Bool("network", false, "allow network access")
	region := fs.String("region", "", "region to place it in (falls back to the next region when full)")
	strict := fs.Bool("strict-region", false, "fail (no_capacity) rather than fall back to another region")
	asJSON := fs.Bool("json", false, "print the sandbox as JSON")
	pos, _, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := exactArgs(pos); err != nil {
		return err
	}
	sbx, err := a.client.Create(ctx, opensandbox.CreateOptions{
		Template: *template, Timeout: time.Duration(timeout), Envs: envs, Metadata: meta,
		CPUCount: *cpus, MemoryMB: *mem, DiskMB: *disk, NetworkEnabled: *network, Region: *region, StrictRegion: *strict,
	})
	if err != nil {
		return err
	}
	if *asJSON {
		info := sbx.Cached()
		return printJSON(a.io.out, info)
	}
	_, err = fmt.Fprintln(a.io.out, sbx.ID())
	return err
}
