package proc

import (
	"context"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func newReaper(t *testing.T) *Reaper {
	r := NewReaper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go r.Reap(ctx)
	return r
}

func sh(script string) Spec {
	return Spec{Argv: []string{"/bin/sh", "-c", script}, Env: os.Environ(), Dir: os.TempDir()}
}

func TestRunCapturesOutputAndExitCode(t *testing.T) {
	r := newReaper(t)
	res, err := r.Run(context.Background(), sh("echo out; echo err >&2; exit 7"), nil, 0, 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 7 || string(res.Stdout.Bytes()) != "out\n" || string(res.Stderr.Bytes()) != "err\n" || res.TimedOut {
		t.Fatalf("got %+v", res)
	}
}

func TestRunSignalExitCode(t *testing.T) {
	r := newReaper(t)
	res, err := r.Run(context.Background(), sh("kill -TERM $$"), nil, 0, 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 128+int(syscall.SIGTERM) {
		t.Fatalf("exit code %d, want %d", res.ExitCode, 128+int(syscall.SIGTERM))
	}
}

func TestRunStdin(t *testing.T) {
	r := newReaper(t)
	res, err := r.Run(context.Background(), Spec{Argv: []string{"cat"}, Env: os.Environ(), Dir: "/"}, []byte("piped\n"), 0, 1<<20, nil)
	if err != nil || string(res.Stdout.Bytes()) != "piped\n" {
		t.Fatalf("got %+v, %v", res, err)
	}
}

func TestRunTimeoutKillsGroup(t *testing.T) {
	r := newReaper(t)
	start := time.Now()
	res, err := r.Run(context.Background(), sh("sleep 6001 & sleep 6002"), nil, 300*time.Millisecond, 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !res.TimedOut || res.ExitCode != 124 {
		t.Fatalf("got %+v", res)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %s", d)
	}
	// The background sleep shared the process group and must be gone.
	waitGone(t, "sleep", "6001")
	waitGone(t, "sleep", "6002")
}

// A caller that gives up (the worker hung up) takes the whole process
// group down with it, long before the timeout.
func TestRunCancelKillsGroup(t *testing.T) {
	r := newReaper(t)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := r.Run(ctx, sh("sleep 6011 & sleep 6012"), nil, time.Hour, 1<<20, nil)
		errc <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for !alive("sleep", "6011") || !alive("sleep", "6012") {
		if time.Now().After(deadline) {
			t.Fatal("command did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("run after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	waitGone(t, "sleep", "6011")
	waitGone(t, "sleep", "6012")
}

// waitGone fails the test unless the process with argv is gone (SIGKILL
// takes effect a moment after kill returns) within a few seconds.
func waitGone(t *testing.T, argv ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for alive(argv...) {
		if time.Now().After(deadline) {
			t.Fatalf("%v survived the kill of its group", argv)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alive reports whether a process with exactly this argv exists and is not
// a zombie waiting to be reaped.
func alive(argv ...string) bool {
	want := strings.Join(argv, "\x00") + "\x00"
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if string(b) != want {
			continue
		}
		if st, _ := os.ReadFile("/proc/" + e.Name() + "/stat"); !strings.Contains(string(st), ") Z ") {
			return true
		}
	}
	return false
}

func TestRunCapsOutput(t *testing.T) {
	r := newReaper(t)
	res, err := r.Run(context.Background(), sh("head -c 100000 /dev/zero"), nil, 0, 1000, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Stdout.Len() != 1000 || !res.Stdout.Truncated() || res.ExitCode != 0 {
		t.Fatalf("len %d truncated %v exit %d", res.Stdout.Len(), res.Stdout.Truncated(), res.ExitCode)
	}
}

func TestRunBackgroundChildDoesNotHoldAnswer(t *testing.T) {
	r := newReaper(t)
	start := time.Now()
	res, err := r.Run(context.Background(), sh("sleep 5 & echo done"), nil, 0, 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Stdout.Bytes()) != "done\n" || time.Since(start) > 3*time.Second {
		t.Fatalf("got %q after %s", res.Stdout.Bytes(), time.Since(start))
	}
}

func TestRunMissingExecutable(t *testing.T) {
	r := newReaper(t)
	if _, err := r.Run(context.Background(), Spec{Argv: []string{"no-such-binary-xyz"}, Env: os.Environ(), Dir: "/"}, nil, 0, 10, nil); err == nil {
		t.Fatal("want error")
	}
}

func TestMergeEnv(t *testing.T) {
	got := MergeEnv([]string{"A=1", "B=2"}, map[string]string{"B": "3", "C": "4"})
	if strings.Join(got, ",") != "A=1,B=3,C=4" {
		t.Fatalf("got %v", got)
	}
}

// Commands whose output together exceeds the budget all complete with their
// whole output: the ones without room wait (blocked on their pipes) until
// an earlier answer is released, and the budget is never overdrawn.
func TestRunOutputWithinBudget(t *testing.T) {
	r := newReaper(t)
	const perCmd, n = 300_000, 6
	budget := NewBudget(2 * 2 * perCmd) // room for two commands at once
	type answer struct {
		res *Result
		err error
	}
	answers := make(chan answer, n)
	for range n {
		go func() {
			res, err := r.Run(context.Background(), sh("head -c 300000 /dev/zero"), nil, time.Minute, perCmd, budget)
			answers <- answer{res, err}
		}()
	}
	for range n {
		a := <-answers
		if a.err != nil {
			t.Fatal(a.err)
		}
		if a.res.Stdout.Len() != perCmd || a.res.Stdout.Truncated() {
			t.Fatalf("stdout %d bytes (truncated %v), want all %d", a.res.Stdout.Len(), a.res.Stdout.Truncated(), perCmd)
		}
		if free := budget.Free(); free < 0 {
			t.Fatalf("budget overdrawn: %d", free)
		}
		a.res.Release()
	}
	if free := budget.Free(); free != 2*2*perCmd {
		t.Fatalf("budget not returned: %d free", free)
	}
}

// A command that cannot get room before its own timeout keeps what fits
// without a reservation and says its output was truncated.
func TestRunOutputWithoutRoomIsTruncated(t *testing.T) {
	r := newReaper(t)
	budget := NewBudget(4 << 20)
	hog, err := budget.reserve(context.Background(), 4<<20) // every byte taken
	if err != nil {
		t.Fatal(err)
	}
	defer budget.release(hog)
	res, err := r.Run(context.Background(), sh("head -c 1000000 /dev/zero; echo done >&2"), nil, 500*time.Millisecond, 1<<20, budget)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Release()
	if !res.Stdout.Truncated() || res.Stdout.Len() > FreeOutput {
		t.Fatalf("stdout %d bytes, truncated %v; want at most %d and truncated", res.Stdout.Len(), res.Stdout.Truncated(), FreeOutput)
	}
}
