package proc

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"
)

// BenchmarkRunEcho is a command run to completion by the reaper, and
// BenchmarkForkExecWait the same command forked, exec'd and waited for
// by hand: the difference is what the agent adds to a process start.
func BenchmarkRunEcho(b *testing.B) {
	r := NewReaper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Reap(ctx)
	spec := Spec{Argv: []string{"/bin/sh", "-c", "echo hi"}, Env: os.Environ(), Dir: "/"}
	for b.Loop() {
		res, err := r.Run(ctx, spec, nil, time.Minute, 1<<20, nil)
		if err != nil || string(res.Stdout.Bytes()) != "hi\n" {
			b.Fatal(err)
		}
	}
}

func BenchmarkForkExecWait(b *testing.B) {
	for b.Loop() {
		pid, err := syscall.ForkExec("/bin/sh", []string{"/bin/sh", "-c", "echo hi >/dev/null"}, &syscall.ProcAttr{Env: os.Environ()})
		if err != nil {
			b.Fatal(err)
		}
		var ws syscall.WaitStatus
		syscall.Wait4(pid, &ws, 0, nil)
	}
}
