package e2e

import (
	"context"
	"testing"
	"time"

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
	rep := all[len(all)-1]
	b.ReportMetric(rep.Rate(load.ExecShell, load.ExecArgv), "execs/s")
	b.ReportMetric(float64(rep.Quantile(0.5, load.ExecShell, load.ExecArgv).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(rep.Quantile(0.99, load.ExecShell, load.ExecArgv).Microseconds())/1000, "p99-ms")
	b.Logf("300 in flight over 30 sandboxes:\n%s", rep.Summary())
}
