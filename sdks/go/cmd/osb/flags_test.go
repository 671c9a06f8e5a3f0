package main

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		args      []string
		pos, tail string
		cwd       string
	}{
		{[]string{"ID", "--", "ls", "-la"}, "[ID]", "[ls -la]", ""},
		{[]string{"--cwd", "/tmp", "ID", "--", "ls"}, "[ID]", "[ls]", "/tmp"},
		{[]string{"ID", "--cwd=/tmp", "--", "sh", "-c", "echo --cwd"}, "[ID]", "[sh -c echo --cwd]", "/tmp"},
		{[]string{"a", "b"}, "[a b]", "[]", ""},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			fs := newFlags("test", io.Discard)
			cwd := fs.String("cwd", "", "")
			pos, tail, err := parseFlags(fs, tt.args)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(pos) != tt.pos || fmt.Sprint(tail) != tt.tail || *cwd != tt.cwd {
				t.Fatalf("pos %v tail %v cwd %q; want %s %s %q", pos, tail, *cwd, tt.pos, tt.tail, tt.cwd)
			}
		})
	}
	if _, _, err := parseFlags(newFlags("test", io.Discard), []string{"--nope"}); err == nil {
		t.Fatal("an unknown flag was accepted")
	}
}

func TestRemote(t *testing.T) {
	tests := []struct {
		in, id, path string
		ok           bool
	}{
		{"abc:/tmp/x", "abc", "/tmp/x", true},
		{"abc:/", "abc", "/", true},
		{"./abc:/x", "./abc", "/x", true},
		{"local.txt", "", "", false},
		{"abc:relative", "", "", false},
		{":/x", "", "", false},
		{"-", "", "", false},
	}
	for _, tt := range tests {
		id, p, ok := remote(tt.in)
		if id != tt.id || p != tt.path || ok != tt.ok {
			t.Errorf("remote(%q) = %q %q %v, want %q %q %v", tt.in, id, p, ok, tt.id, tt.path, tt.ok)
		}
	}
}

func TestFlagValues(t *testing.T) {
	var d durationFlag
	for in, want := range map[string]time.Duration{"90": 90 * time.Second, "10m": 10 * time.Minute, "1h30m": 90 * time.Minute} {
		if err := d.Set(in); err != nil || time.Duration(d) != want {
			t.Errorf("duration %q = %v, %v; want %v", in, time.Duration(d), err, want)
		}
	}
	if d.Set("soon") == nil {
		t.Error("duration \"soon\" was accepted")
	}
	kv := kvFlag{}
	if err := kv.Set("A=b=c"); err != nil || kv["A"] != "b=c" {
		t.Errorf("kv A=b=c: %v %v", kv, err)
	}
	if kv.Set("novalue") == nil || kv.Set("=x") == nil {
		t.Error("a malformed K=V was accepted")
	}
}

func TestFormatting(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 100 << 20: "100.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := size(n); got != want {
			t.Errorf("size(%d) = %q, want %q", n, got, want)
		}
	}
	now := time.Now()
	if got := ago(now, now.Add(-90*time.Second)); got != "1m ago" {
		t.Errorf("ago = %q", got)
	}
	if got := in(now, now.Add(3*time.Hour+time.Second)); got != "in 3h" {
		t.Errorf("in = %q", got)
	}
	if got := in(now, now.Add(-time.Second)); got != "passed" {
		t.Errorf("in (past) = %q", got)
	}
}

func TestUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"help"}, stdio{out: &out, err: &errOut}); code != 0 || !strings.Contains(out.String(), "osb exec") {
		t.Fatalf("help: %d %q", code, out.String())
	}
	if code := run([]string{"frobnicate"}, stdio{out: &out, err: &errOut}); code != 2 || !strings.Contains(errOut.String(), `unknown command "frobnicate"`) {
		t.Fatalf("unknown command: %d %q", code, errOut.String())
	}
	errOut.Reset()
	if code := run([]string{"exec", "ID"}, stdio{out: &out, err: &errOut}); code != 2 || !strings.Contains(errOut.String(), "usage: osb exec") {
		t.Fatalf("exec without command: %d %q", code, errOut.String())
	}
}
