package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	opensandbox "github.com/opensandbox/opensandbox/sdks/go"
)

// newFlags returns a flag set that reports errors instead of exiting.
func newFlags(name string, errOut io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("osb "+name, flag.ContinueOnError)
	fs.SetOutput(errOut)
	return fs
}

// parseFlags parses args in which flags and positional arguments mix, as in
// `osb exec ID --cwd /tmp -- ls`. Everything after the first "--" is
// returned untouched as tail.
func parseFlags(fs *flag.FlagSet, args []string) (pos, tail []string, err error) {
	head := args
	for i, a := range args {
		if a == "--" {
			head, tail = args[:i], args[i+1:]
			break
		}
	}
	for {
		if err := fs.Parse(head); err != nil {
			return nil, nil, err
		}
		head = fs.Args()
		if len(head) == 0 {
			return pos, tail, nil
		}
		pos = append(pos, head[0])
		head = head[1:]
	}
}

// kvFlag collects repeated K=V flags.
type kvFlag map[string]string

func (kv kvFlag) String() string {
	parts := make([]string, 0, len(kv))
	for k, v := range kv {
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, ",")
}

func (kv kvFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want KEY=VALUE, got %q", s)
	}
	kv[k] = v
	return nil
}

// durationFlag accepts a Go duration ("90s", "10m") or plain seconds ("90").
type durationFlag time.Duration

func (d *durationFlag) String() string { return time.Duration(*d).String() }

func (d *durationFlag) Set(s string) error {
	if n, err := strconv.Atoi(s); err == nil {
		*d = durationFlag(time.Duration(n) * time.Second)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration such as 90s or 10m, got %q", s)
	}
	*d = durationFlag(v)
	return nil
}

// exactArgs checks the number of positional arguments.
func exactArgs(pos []string, names ...string) error {
	if len(pos) != len(names) {
		return usagef("want %s, got %d argument(s)", strings.Join(names, " "), len(pos))
	}
	return nil
}

// parseSandbox parses args, checks the positional arguments against names
// (the first being the sandbox id) and connects to that sandbox. It returns
// the positional arguments and what followed "--".
func (a *app) parseSandbox(ctx context.Context, fs *flag.FlagSet, args []string, names ...string) (*opensandbox.Sandbox, []string, []string, error) {
	pos, tail, err := parseFlags(fs, args)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := exactArgs(pos, names...); err != nil {
		return nil, nil, nil, err
	}
	sbx, err := a.client.Connect(ctx, pos[0])
	if err != nil {
		return nil, nil, nil, err
	}
	return sbx, pos, tail, nil
}
