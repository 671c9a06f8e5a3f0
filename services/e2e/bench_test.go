package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	osb "github.com/opensandbox/opensandbox/sdks/go"

	"github.com/opensandbox/opensandbox/services/e2e/load"
)

// BenchmarkExecThroughput is the load of the issue that found output lost:
// 30 sandboxes, 10 client threads each (300 requests in flight), every
// thread running echo with a unique tag, half through the shell, half as
// argv; every answer is checked. It reports commands per second and the
// latency a client sees. `make bench` runs it once (-benchtime 1x).
func BenchmarkExecThroughput(b *testing.B) {
	srv := startServer(b, "OPENSANDBOX_CAPACITY=100")
	ctx := context.Background()
	const sandboxes, threads = 30, 10
	client := load.NewClient(srv.URL, srv.APIKey, sandboxes*threads)
	sbxs, err := load.CreateSandboxes(ctx, client, sandboxes, "busybox")
	if err != nil {
		b.Fatal(err)
	}
	defer load.KillAll(ctx, sbxs)
	// Warm up connections and the agents' first fork.
	load.Run(ctx, load.Options{Sandboxes: sbxs, Threads: threads, PerThread: 1, Mix: load.ExecMix})
	agents := agentPIDs(b, sbxs)
	cpuBefore := cpuOf(b, srv.PID(), agents)
	b.ResetTimer()
	var all []*load.Report
	for range b.N {
		rep := load.Run(ctx, load.Options{Sandboxes: sbxs, Threads: threads, PerThread: 20, Mix: load.ExecMix, OpTimeout: time.Minute})
		if len(rep.Failures) > 0 {
			b.Fatalf("%d wrong answers, first: %s", len(rep.Failures), rep.Failures[0])
		}
		all = append(all, rep)
	}
	b.StopTimer()
	cpuAfter := cpuOf(b, srv.PID(), agents)
	execs := 0
	for _, r := range all {
		execs += r.Ops[load.ExecShell] + r.Ops[load.ExecArgv]
	}
	// Where the time goes, in CPU per command (independent of what else
	// the machine runs): the server, the agents with the commands they
	// started, and this client.
	for i, name := range []string{"server", "agent+cmd", "client"} {
		b.ReportMetric(float64((cpuAfter[i]-cpuBefore[i]).Microseconds())/float64(execs), name+"-cpu-µs/op")
	}
	rep := all[len(all)-1]
	// The ceiling in the same run: how fast processes of the same kind start
	// inside a sandbox with nothing of ours in between (two shell loops,
	// one per core, each starting `sh -c 'echo tag'` 500 times).
	raw := rawSpawnRate(b, sbxs[0])
	b.ReportMetric(raw, "raw-spawns/s")
	b.ReportMetric(rep.Rate(load.ExecShell, load.ExecArgv)/raw, "ratio-to-raw")
	b.ReportMetric(rep.Rate(load.ExecShell, load.ExecArgv), "execs/s")
	b.ReportMetric(float64(rep.Quantile(0.5, load.ExecShell, load.ExecArgv).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(rep.Quantile(0.99, load.ExecShell, load.ExecArgv).Microseconds())/1000, "p99-ms")
	b.Logf("300 in flight over 30 sandboxes:\n%s", rep.Summary())
}

// agentPIDs returns the host pids of the sandboxes' agents.
func agentPIDs(b *testing.B, sbxs []*osb.Sandbox) []int {
	var pids []int
	for _, s := range sbxs {
		out, err := exec.Command("podman", "inspect", "--format", "{{.State.Pid}}", "osb-"+s.ID()).Output()
		if err != nil {
			b.Fatalf("inspect %s: %v", s.ID(), err)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(out)))
		pids = append(pids, pid)
	}
	return pids
}

// cpuOf returns the CPU time used so far by the server, by the agents with
// their reaped children, and by this process.
func cpuOf(b *testing.B, server int, agents []int) [3]time.Duration {
	var out [3]time.Duration
	out[0] = procCPU(b, server, false)
	for _, pid := range agents {
		out[1] += procCPU(b, pid, true)
	}
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	out[2] = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return out
}

// procCPU reads utime+stime (and with children, the reaped children's) of pid.
func procCPU(b *testing.B, pid int, children bool) time.Duration {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatalf("cpu of %d: %v", pid, err)
	}
	f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+2:]))
	ticks := 0
	n := 2 // utime, stime
	if children {
		n = 4 // and cutime, cstime
	}
	for _, v := range f[11 : 11+n] {
		t, _ := strconv.Atoi(v)
		ticks += t
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ
}

// rawSpawnRate starts processes in a loop inside a sandbox and returns how
// many it started per second.
func rawSpawnRate(b *testing.B, sbx *osb.Sandbox) float64 {
	const per = 500
	script := fmt.Sprintf(`spawn() { i=0; while [ $i -lt %d ]; do sh -c 'echo tag' >/dev/null; i=$((i+1)); done; }
read start _ </proc/uptime; spawn & spawn & wait; read end _ </proc/uptime; echo $start $end`, per)
	res, err := sbx.Commands().Run(context.Background(), script, osb.RunOptions{Timeout: 5 * time.Minute})
	if err != nil || res.ExitCode != 0 {
		b.Fatalf("raw spawn loop: %v %+v", err, res)
	}
	var start, end float64
	if _, err := fmt.Sscan(res.Stdout, &start, &end); err != nil || end <= start {
		b.Fatalf("raw spawn loop printed %q", res.Stdout)
	}
	return 2 * per / (end - start)
}
