package publisher

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/natsx"
)

// BenchmarkPipeline100k measures the event pipeline shaped as it is
// deployed: NATS JetStream (osb-nats) and the syncer (opensandbox-syncer) in
// their own processes, PostgreSQL in its own, the publisher in this one
// (a worker's part). 100,000 events already in per-sandbox SQLite files go to
// PostgreSQL (events/s from the first publish to the last committed row),
// while probe events written live every 5 ms measure the end-to-end lag
// (recorded -> committed) under that load.
// Targets: >= 50,000 events/s, p99 lag <= 3 s.
func BenchmarkPipeline100k(b *testing.B) {
	const total, sandboxes = 100_000, 20
	p := newPipeline(b)
	// The fixture's in-process NATS makes way for a NATS process on its port.
	p.nats.Shutdown()
	p.nats.WaitForShutdown()
	natsProc := exec.Command(buildBinary(b, "osb-nats", "github.com/opensandbox/opensandbox/services/controlplane/cmd/osb-nats"),
		"-port", strconv.Itoa(p.natsPort), "-store", b.TempDir())
	natsProc.Env = append(os.Environ(), "NATS_URL="+p.natsURL(natsx.RoleControlPlane),
		"NATS_WORKER_URL="+p.natsURL(natsx.RoleWorker), "NATS_SYNCER_URL="+p.natsURL(natsx.RoleSyncer))
	startProcess(b, natsProc)
	waitTCP(b, "127.0.0.1:"+strconv.Itoa(p.natsPort))

	for s := range sandboxes {
		p.writeCommands(sandboxName(s), total/sandboxes)
	}
	healthPort := freePort(b)
	syncerProc := exec.Command(buildSyncer(b))
	syncerProc.Env = append(os.Environ(), "DATABASE_URL="+p.dsn, "NATS_URL="+p.natsURL(natsx.RoleSyncer),
		"OPENSANDBOX_SYNCER_PORT="+healthPort, "OPENSANDBOX_LOG_LEVEL=error")
	startProcess(b, syncerProc)
	health := "http://127.0.0.1:" + healthPort + "/health"

	start := time.Now()
	p.startPublisher()
	stopProbe := make(chan struct{})
	probes := make(chan int, 1)
	go func() {
		n := 0
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopProbe:
				probes <- n
				return
			case <-t.C:
				p.writeCommands("probe", 1)
				n++
			}
		}
	}()

	// Poll the syncer's own count, not PostgreSQL: counting a growing table
	// every few milliseconds would load the database being measured.
	deadline := time.Now().Add(5 * time.Minute)
	var written uint64
	for written < total {
		if time.Now().After(deadline) {
			b.Fatal("pipeline did not drain 100k events in 5 minutes")
		}
		time.Sleep(20 * time.Millisecond)
		written = syncerWritten(health)
	}
	drained := time.Since(start) // probes included in written
	natsCPU, syncerCPU := procCPU(natsProc.Process.Pid), procCPU(syncerProc.Process.Pid)
	close(stopProbe)
	nProbes := <-probes
	p.waitRows(total+nProbes, time.Minute)

	var p50, p99 float64
	err := p.pool.QueryRow(context.Background(), `
		SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lag), percentile_cont(0.99) WITHIN GROUP (ORDER BY lag)
		FROM (SELECT extract(epoch FROM synced_at - created_at) * 1000 AS lag FROM command_logs WHERE sandbox_id = 'probe') l`).Scan(&p50, &p99)
	if err != nil {
		b.Fatal(err)
	}
	rate := float64(written) / drained.Seconds()
	b.ReportMetric(rate, "events/s")
	b.ReportMetric(p50, "lag-p50-ms")
	b.ReportMetric(p99, "lag-p99-ms")
	b.ReportMetric(float64(natsCPU.Microseconds())/float64(written), "nats-cpu-us/event")
	fmt.Printf("\npipeline: %d events SQLite -> JetStream -> PostgreSQL in %s = %.0f events/s (target >= 50000); "+
		"lag of %d live probe events under that load: p50 %.0f ms, p99 %.0f ms (target p99 <= 3000 ms); "+
		"CPU per event: NATS %.0f µs, syncer %.0f µs\n",
		written, drained.Round(time.Millisecond), rate, nProbes, p50, p99,
		float64(natsCPU.Microseconds())/float64(written), float64(syncerCPU.Microseconds())/float64(written))
}

func syncerWritten(url string) uint64 {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var h struct {
		Sync struct{ Written uint64 }
	}
	json.NewDecoder(resp.Body).Decode(&h)
	return h.Sync.Written
}

// buildBinary builds a main package into a temporary directory.
func buildBinary(b testing.TB, name, pkg string) string {
	bin := filepath.Join(b.TempDir(), name)
	if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
		b.Fatalf("build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

func startProcess(b testing.TB, cmd *exec.Cmd) {
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
}

func freePort(b testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

func waitTCP(b testing.TB, addr string) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s not listening: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func procCPU(pid int) time.Duration {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	f := strings.Fields(string(b)[strings.LastIndex(string(b), ")")+2:])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+k) * 10 * time.Millisecond
}
