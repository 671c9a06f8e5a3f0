package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/opensandbox/opensandbox/services/e2e/load"
	"github.com/opensandbox/opensandbox/services/e2e/serverproc"
)

var bins serverproc.Binaries

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "osb-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bins, err = serverproc.Build(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// startServer runs a combined server for one test and stops it at cleanup.
func startServer(t testing.TB, env ...string) *serverproc.Server {
	t.Helper()
	s, err := serverproc.Start(context.Background(), bins, serverproc.Options{Dir: t.TempDir(), Env: env})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Stop()
		// Every test kills what it made; whatever is left is a leak.
		out, _ := exec.Command("podman", "ps", "-aq", "--filter", "label=opensandbox.worker="+s.WorkerID).Output()
		if left := strings.Fields(string(out)); len(left) > 0 {
			t.Errorf("%d containers of this server were left behind", len(left))
			exec.Command("podman", append([]string{"rm", "-f"}, left...)...).Run()
		}
		if t.Failed() {
			t.Logf("server log, warnings and errors:\n%s", s.Problems(40))
		}
	})
	return s
}

// TestNoOutputLostUnderLoad runs 300 operations in flight over 30 sandboxes
// and compares every answer with what the command printed: plain commands
// through the shell and as argv, stdout with stderr and an exit code, output
// larger than a pipe, streamed runs, file round trips, background processes
// followed with replay, and terminals. One wrong answer fails the test.
func TestNoOutputLostUnderLoad(t *testing.T) {
	srv := startServer(t, "OPENSANDBOX_CAPACITY=100")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const sandboxes, threads = 30, 10
	client := load.NewClient(srv.URL, srv.APIKey, sandboxes*threads)
	sbxs, err := load.CreateSandboxes(ctx, client, sandboxes, "busybox")
	if err != nil {
		t.Fatal(err)
	}
	defer load.KillAll(context.Background(), sbxs)

	for _, phase := range []struct {
		name      string
		mix       load.Mix
		perThread int
	}{
		{"plain echo commands", load.ExecMix, 10},
		{"every output path", load.MixedMix, 5},
	} {
		rep := load.Run(ctx, load.Options{Sandboxes: sbxs, Threads: threads, PerThread: phase.perThread, Mix: phase.mix})
		t.Logf("%s:\n%s", phase.name, rep.Summary())
		if want := sandboxes * threads * phase.perThread; rep.Total()+len(rep.Failures) != want {
			t.Errorf("%s: %d operations answered, want %d", phase.name, rep.Total()+len(rep.Failures), want)
		}
		if len(rep.Failures) > 0 {
			var b strings.Builder
			for i, f := range rep.Failures {
				if i == 20 {
					fmt.Fprintf(&b, "… and %d more\n", len(rep.Failures)-i)
					break
				}
				fmt.Fprintln(&b, f)
			}
			t.Errorf("%s: %d of %d operations answered wrong:\n%s", phase.name, len(rep.Failures), rep.Total()+len(rep.Failures), b.String())
		}
	}
}
