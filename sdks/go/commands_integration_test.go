//go:build integration

package opensandbox_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	opensandbox "github.com/opensandbox/opensandbox/sdks/go"
)

func TestRun(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t, time.Minute)
	cmds := newSandbox(t, "busybox").Commands()
	tests := []struct {
		name           string
		cmd            string
		opts           opensandbox.RunOptions
		code           int
		stdout, stderr string
	}{
		{"shell", "echo hello; echo oops >&2; exit 3", opensandbox.RunOptions{}, 3, "hello\n", "oops\n"},
		{"argv", "printf", opensandbox.RunOptions{Args: []string{"%s|%s", "a b", "$HOME"}}, 0, "a b|$HOME", ""},
		{"cwd", "pwd", opensandbox.RunOptions{Cwd: "/tmp"}, 0, "/tmp\n", ""},
		{"envs", "echo $FOO", opensandbox.RunOptions{Envs: map[string]string{"FOO": "bar"}}, 0, "bar\n", ""},
		{"stdin", "tr a-z A-Z", opensandbox.RunOptions{Stdin: "piped in"}, 0, "PIPED IN", ""},
		{"missing executable", "no-such-program", opensandbox.RunOptions{Args: []string{"x"}}, 127, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := cmds.Run(ctx, tt.cmd, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if res.ExitCode != tt.code || res.Stdout != tt.stdout || (tt.stderr != "" && res.Stderr != tt.stderr) {
				t.Fatalf("got %+v, want code %d stdout %q stderr %q", res, tt.code, tt.stdout, tt.stderr)
			}
		})
	}
	t.Run("timeout", func(t *testing.T) {
		start := time.Now()
		res, err := cmds.Run(ctx, "echo started; sleep 30", opensandbox.RunOptions{Timeout: time.Second})
		if !errors.Is(err, opensandbox.ErrTimeout) {
			t.Fatalf("err %v, want ErrTimeout", err)
		}
		if res == nil || !res.TimedOut || res.ExitCode != 124 || res.Stdout != "started\n" {
			t.Fatalf("result %+v", res)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("a 1 s timeout took %s", d)
		}
	})
}

func TestRunStreamed(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t, time.Minute)
	sbx := newSandbox(t, "busybox")
	// The command prints, then waits for a file that the test writes only
	// once it has seen that output: it can only end if output arrives live.
	var stdout, stderr syncBuffer
	released := make(chan error, 1)
	res, err := sbx.Commands().Run(ctx,
		"echo first; echo warning >&2; while [ ! -e /tmp/go-on ]; do sleep 0.05; done; echo second",
		opensandbox.RunOptions{
			Timeout: 30 * time.Second,
			OnStdout: func(b []byte) {
				stdout.Write(b)
				if strings.Contains(stdout.String(), "first") && len(released) == 0 {
					go func() {
						_, err := sbx.Files().Write(ctx, "/tmp/go-on", strings.NewReader("x"))
						released <- err
					}()
				}
			},
			OnStderr: stderr.Write,
		})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-released; err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 0 || res.Stdout != "first\nsecond\n" || res.Stderr != "warning\n" || res.PID <= 0 {
		t.Fatalf("result %+v", res)
	}
	if stdout.String() != "first\nsecond\n" || stderr.String() != "warning\n" {
		t.Fatalf("callbacks saw %q and %q", stdout.String(), stderr.String())
	}
}

func TestBackgroundProcesses(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t, time.Minute)
	sbx := newSandbox(t, "busybox")
	cmds := sbx.Commands()

	t.Run("stdin", func(t *testing.T) {
		h, err := cmds.Start(ctx, "read first; echo got:$first; cat", opensandbox.RunOptions{Tag: "reader"})
		if err != nil {
			t.Fatal(err)
		}
		procs, err := cmds.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(procs, func(p opensandbox.ProcessInfo) bool { return p.PID == h.PID })
		if i < 0 || !procs[i].Running || procs[i].Tag != "reader" || procs[i].ExitCode != nil {
			t.Fatalf("list: %+v", procs)
		}
		if err := h.SendStdin(ctx, []byte("hello\n")); err != nil {
			t.Fatal(err)
		}
		if err := h.SendStdin(ctx, []byte("and the rest")); err != nil {
			t.Fatal(err)
		}
		if err := h.CloseStdin(ctx); err != nil {
			t.Fatal(err)
		}
		res, err := h.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if res.ExitCode != 0 || res.Stdout != "got:hello\nand the rest" || res.PID != h.PID {
			t.Fatalf("result %+v", res)
		}
		procs, err = cmds.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		i = slices.IndexFunc(procs, func(p opensandbox.ProcessInfo) bool { return p.PID == h.PID })
		if i < 0 || procs[i].Running || procs[i].ExitCode == nil || *procs[i].ExitCode != 0 {
			t.Fatalf("list after exit: %+v", procs)
		}
	})

	t.Run("disconnect and kill", func(t *testing.T) {
		var out syncBuffer
		h, err := cmds.Start(ctx, "echo up; sleep 600", opensandbox.RunOptions{OnStdout: out.Write})
		if err != nil {
			t.Fatal(err)
		}
		out.waitFor(t, 0, "up")
		h.Disconnect() // stop following; the process lives on
		procs, err := cmds.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if i := slices.IndexFunc(procs, func(p opensandbox.ProcessInfo) bool { return p.PID == h.PID }); i < 0 || !procs[i].Running {
			t.Fatalf("after Disconnect the process is not running: %+v", procs)
		}
		again, err := cmds.Connect(ctx, h.PID, opensandbox.ConnectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := again.Kill(ctx); err != nil {
			t.Fatal(err)
		}
		res, err := again.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if res.ExitCode == 0 || res.Stdout != "up\n" {
			t.Fatalf("killed process: %+v", res)
		}
	})

	t.Run("signal", func(t *testing.T) {
		var out syncBuffer
		h, err := cmds.Start(ctx, "trap 'echo terminated; exit 5' TERM; echo ready; while true; do sleep 0.05; done",
			opensandbox.RunOptions{OnStdout: out.Write})
		if err != nil {
			t.Fatal(err)
		}
		out.waitFor(t, 0, "ready")
		if err := h.Signal(ctx, "SIGTERM"); err != nil {
			t.Fatal(err)
		}
		res, err := h.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if res.ExitCode != 5 || !strings.Contains(out.String(), "terminated") {
			t.Fatalf("result %+v, output %q", res, out.String())
		}
	})

	t.Run("connect", func(t *testing.T) {
		h, err := cmds.Start(ctx, "echo one; while [ ! -e /tmp/release ]; do sleep 0.05; done; echo two >&2",
			opensandbox.RunOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var out, errOut syncBuffer
		c, err := cmds.Connect(ctx, h.PID, opensandbox.ConnectOptions{OnStdout: out.Write, OnStderr: errOut.Write})
		if err != nil {
			t.Fatal(err)
		}
		out.waitFor(t, 0, "one\n") // replayed or live
		if _, err := sbx.Files().Write(ctx, "/tmp/release", strings.NewReader("")); err != nil {
			t.Fatal(err)
		}
		res, err := c.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if res.ExitCode != 0 || res.Stdout != "one\n" || res.Stderr != "two\n" || errOut.String() != "two\n" {
			t.Fatalf("result %+v, stderr callback %q", res, errOut.String())
		}
	})

	t.Run("unknown pid", func(t *testing.T) {
		_, err := cmds.Connect(ctx, 999999, opensandbox.ConnectOptions{})
		if !errors.Is(err, opensandbox.ErrNotFound) || errors.Is(err, opensandbox.ErrSandboxGone) {
			t.Fatalf("connect to pid 999999: %v", err)
		}
		requireCode(t, err, 404, opensandbox.CodeProcessNotFound)
	})
}
