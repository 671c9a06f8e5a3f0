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

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/opensandbox/opensandbox/services/shared/events"
	"github.com/opensandbox/opensandbox/services/shared/natsx"
)

// BenchmarkPipeline100k measures the event pipeline shaped as it is
// deployed: NATS JetStream (osb-nats) and the syncer (opensandbox-syncer) in
// their own processes, PostgreSQL in its own, the publisher in this one
// (a worker's part). 100,000 events already in per-sandbox SQLite files go to
// PostgreSQL (events/s from the first publish to the last committed row),
// while probe events written live every 5 ms measure the end-to-end lag
// (recorded -> committed) under that load. CPU time is counted over the
// drain for NATS, the syncer, this process (the publisher, and the probe
// writer) and the whole machine (PostgreSQL is the rest).
// Targets: >= 50,000 events/s, p99 lag <= 3 s.
func BenchmarkPipeline100k(b *testing.B) {
	const total, sandboxes = 100_000, 20
	p := newPipeline(b)
	natsProc := p.natsProcess(b)
	for s := range sandboxes {
		p.writeCommands(sandboxName(s), total/sandboxes)
	}
	healthPort := freePort(b)
	syncerProc := exec.Command(buildSyncer(b))
	syncerProc.Env = append(os.Environ(), "DATABASE_URL="+p.dsn, "NATS_URL="+p.natsURL(natsx.RoleSyncer),
		"OPENSANDBOX_SYNCER_PORT="+healthPort, "OPENSANDBOX_LOG_LEVEL=error")
	startProcess(b, syncerProc)
	health := "http://127.0.0.1:" + healthPort + "/health"

	natsCPU0, syncerCPU0, selfCPU0 := procCPU(natsProc.Process.Pid), procCPU(syncerProc.Process.Pid), procCPU(os.Getpid())
	busy0 := machineCPU()
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
	perEvent := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(written) }
	natsCPU := perEvent(procCPU(natsProc.Process.Pid) - natsCPU0)
	syncerCPU := perEvent(procCPU(syncerProc.Process.Pid) - syncerCPU0)
	selfCPU := perEvent(procCPU(os.Getpid()) - selfCPU0)
	allCPU := perEvent(machineCPU() - busy0)
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
	var messages uint64
	if st, err := p.js(natsx.RoleControlPlane).Stream(context.Background(), natsx.EventsStream); err == nil {
		messages = st.CachedInfo().State.LastSeq // every message the stream ever took
	}
	rate := float64(written) / drained.Seconds()
	b.ReportMetric(rate, "events/s")
	b.ReportMetric(p50, "lag-p50-ms")
	b.ReportMetric(p99, "lag-p99-ms")
	b.ReportMetric(allCPU, "cpu-us/event")
	fmt.Printf("\npipeline: %d events SQLite -> JetStream -> PostgreSQL in %s = %.0f events/s (target >= 50000), "+
		"in %d JetStream messages; lag of %d live probe events under that load: p50 %.0f ms, p99 %.0f ms (target p99 <= 3000 ms); "+
		"CPU per event: %.1f µs in all (NATS %.1f, syncer %.1f, publisher %.1f, PostgreSQL and the rest %.1f)\n",
		written, drained.Round(time.Millisecond), rate, messages, nProbes, p50, p99,
		allCPU, natsCPU, syncerCPU, selfCPU, allCPU-natsCPU-syncerCPU-selfCPU)
}

// BenchmarkJetStreamOneMessagePerEvent measures what bounds a pipeline that
// sends each event as its own message: the same NATS process and
// credentials, 100,000 messages of one encoded event each, published with
// their event id as Nats-Msg-Id and acked by JetStream, pulled by a durable
// consumer and acknowledged one by one — no SQLite, no PostgreSQL.
func BenchmarkJetStreamOneMessagePerEvent(b *testing.B) {
	const total, window = 100_000, 1000
	p := newPipeline(b)
	natsProc := p.natsProcess(b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := natsx.EnsureEventStream(ctx, quietLog(), p.js(natsx.RoleControlPlane), natsx.ConsumedStream(0)); err != nil {
		b.Fatal(err)
	}
	cons, err := p.js(natsx.RoleSyncer).CreateOrUpdateConsumer(ctx, natsx.EventsStream, jetstream.ConsumerConfig{
		Durable: "bench", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 4 * window})
	if err != nil {
		b.Fatal(err)
	}
	payload, _ := events.Marshal(events.Event{ID: events.NewID(), Type: events.TypeCommand, SandboxID: "bench", WorkerID: "w1",
		Region: "test", Time: time.Now(), Command: &events.CommandData{Command: "echo", Args: []string{"1"}}})
	consumed := make(chan error, 1)
	go func() {
		for got := 0; got < total; {
			batch, err := cons.Fetch(window, jetstream.FetchMaxWait(time.Second))
			if err != nil {
				consumed <- err
				return
			}
			for m := range batch.Messages() {
				m.Ack()
				got++
			}
		}
		consumed <- nil
	}()
	js := p.js(natsx.RoleWorker)
	cpu0 := procCPU(natsProc.Process.Pid)
	start := time.Now()
	for sent := 0; sent < total; sent += window {
		futures := make([]jetstream.PubAckFuture, 0, window)
		for range window {
			msg := nats.NewMsg(natsx.EventSubject("test", "w1"))
			msg.Data = payload
			msg.Header.Set(jetstream.MsgIDHeader, events.NewID())
			f, err := js.PublishMsgAsync(msg)
			if err != nil {
				b.Fatal(err)
			}
			futures = append(futures, f)
		}
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				b.Fatal(err)
			case <-ctx.Done():
				b.Fatal(ctx.Err())
			}
		}
	}
	if err := <-consumed; err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	natsCPU := float64((procCPU(natsProc.Process.Pid) - cpu0).Microseconds()) / total
	rate := total / elapsed.Seconds()
	b.ReportMetric(rate, "msgs/s")
	b.ReportMetric(natsCPU, "nats-cpu-us/msg")
	fmt.Printf("\nJetStream alone, one message per event: %d messages published, acked, delivered and acknowledged in %s = %.0f messages/s; "+
		"NATS CPU %.1f µs per message\n", total, elapsed.Round(time.Millisecond), rate, natsCPU)
}

// natsProcess replaces the fixture's in-process NATS with an osb-nats
// process on its port (same users), as NATS runs when deployed.
func (p *pipeline) natsProcess(b *testing.B) *exec.Cmd {
	p.nats.Shutdown()
	p.nats.WaitForShutdown()
	cmd := exec.Command(buildBinary(b, "osb-nats", "github.com/opensandbox/opensandbox/services/controlplane/cmd/osb-nats"),
		"-port", strconv.Itoa(p.natsPort), "-store", b.TempDir())
	cmd.Env = append(os.Environ(), "NATS_URL="+p.natsURL(natsx.RoleControlPlane),
		"NATS_WORKER_URL="+p.natsURL(natsx.RoleWorker), "NATS_SYNCER_URL="+p.natsURL(natsx.RoleSyncer))
	startProcess(b, cmd)
	waitTCP(b, "127.0.0.1:"+strconv.Itoa(p.natsPort))
	return cmd
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

// machineCPU is the CPU time every process of the machine used so far.
func machineCPU() time.Duration {
	b, _ := os.ReadFile("/proc/stat")
	line, _, _ := strings.Cut(string(b), "\n")
	var ticks int64
	for i, f := range strings.Fields(line)[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		v, _ := strconv.ParseInt(f, 10, 64)
		ticks += v
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}
