package consulwatch

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/registry"
	"github.com/opensandbox/opensandbox/services/shared/consultest"
	"github.com/opensandbox/opensandbox/services/shared/proto/workerv1"
	"github.com/opensandbox/opensandbox/services/worker/consulreg"
	"github.com/prometheus/client_golang/prometheus"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func client(t testing.TB, addr, token string) *consul.Client {
	t.Helper()
	cfg := consul.DefaultConfig()
	cfg.Address, cfg.Token = addr, token
	c, err := consul.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// register puts a worker into dc the way a real worker does (consulreg).
func register(t testing.TB, fake *consultest.Server, dc, id string) *consulreg.Registrar {
	t.Helper()
	r, err := consulreg.New(quiet, client(t, fake.Addr(dc), fake.Token), consulreg.Config{
		WorkerID: id, Region: dc, HTTPURL: "http://127.0.0.1:8081", GRPCAddr: "127.0.0.1:9090", Capacity: 10, Version: "test",
		TTL: time.Hour,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Register(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r
}

type dropLog struct {
	mu   sync.Mutex
	gone map[string]string
}

func (d *dropLog) get(id string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.gone[id]
}

// watched starts a registry fed by a watcher of fake (through dc "eu"'s agent).
func watched(t testing.TB, fake *consultest.Server) (*registry.Registry, *dropLog) {
	t.Helper()
	drops := &dropLog{gone: map[string]string{}}
	reg := registry.New(quiet, registry.Config{External: true, OnDrop: func(w registry.Worker) {
		drops.mu.Lock()
		drops.gone[w.ID] = w.Lost
		drops.mu.Unlock()
	}}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	w := New(quiet, client(t, fake.Addr("eu"), fake.Token), reg, Config{Wait: time.Minute, DCRefresh: 100 * time.Millisecond}, NewMetrics(prometheus.NewRegistry()))
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return reg, drops
}

func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Contract test against the fake Consul HTTP API: workers registered in two
// datacenters by the worker's own code are found in their regions; a check
// turning critical or a service leaving drops the worker at once; a
// draining registration keeps it listed but draining; and the watcher waits
// in blocking queries instead of polling.
func TestConsulContractWatcherFollowsEveryDatacenter(t *testing.T) {
	fake := consultest.New(t, "eu", "us")
	fake.Token = "consul-acl-token"
	reg, drops := watched(t, fake)
	register(t, fake, "eu", "w-eu-1")
	register(t, fake, "eu", "w-eu-2")
	us := register(t, fake, "us", "w-us-1")
	eventually(t, "workers in both regions", func() bool { return len(reg.Region("eu")) == 2 && len(reg.Region("us")) == 1 })
	if w, _ := reg.Get("w-us-1"); w.GRPCAddr != "127.0.0.1:9090" || w.HTTPAddr != "http://127.0.0.1:8081" || w.Capacity != 10 || w.Region != "us" || w.Draining {
		t.Fatalf("worker from Consul: %+v", w)
	}

	// Blocking queries: with nothing changing, the health endpoint is not
	// asked again and again (each datacenter's next query may just be on
	// its way when counting starts).
	before := healthCalls(fake)
	time.Sleep(500 * time.Millisecond)
	if n := healthCalls(fake) - before; n > 2 {
		t.Fatalf("%d health queries in 500 ms without a change: polling, not blocking", n)
	}

	if err := us.SetDraining(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	eventually(t, "draining seen", func() bool { w, _ := reg.Get("w-us-1"); return w.Draining })

	start := time.Now()
	fake.SetStatus("eu", "w-eu-1", consultest.Critical)
	eventually(t, "critical worker dropped", func() bool { _, ok := reg.Get("w-eu-1"); return !ok })
	t.Logf("check critical -> out of placement: %s", time.Since(start))
	eventually(t, "drop reported", func() bool { return drops.get("w-eu-1") != "" })
	if !strings.Contains(drops.get("w-eu-1"), "Consul") {
		t.Fatalf("drop reason %q", drops.get("w-eu-1"))
	}
	fake.Remove("eu", "w-eu-2")
	eventually(t, "removed worker dropped", func() bool { return len(reg.Region("eu")) == 0 })

	// A passing check again brings the worker back.
	fake.SetStatus("eu", "w-eu-1", consultest.Passing)
	fake.SetStatus("eu", "w-eu-1", consultest.Passing)
	register(t, fake, "eu", "w-eu-1")
	eventually(t, "worker back", func() bool { _, ok := reg.Get("w-eu-1"); return ok })
}

func healthCalls(fake *consultest.Server) int {
	n := 0
	for _, c := range fake.Calls() {
		if strings.HasPrefix(c, "GET /v1/health/service/") {
			n++
		}
	}
	return n
}

// The registry's load comes from heartbeats, membership from Consul: a
// heartbeat of a worker Consul does not list places nothing.
func TestConsulMembershipWinsOverHeartbeats(t *testing.T) {
	fake := consultest.New(t, "eu")
	reg, _ := watched(t, fake)
	register(t, fake, "eu", "w1")
	eventually(t, "member", func() bool { _, ok := reg.Get("w1"); return ok })
	reg.Observe(&workerv1.Heartbeat{WorkerId: "stranger", Region: "eu", GrpcAddr: "10.0.0.9:9090", HttpAddr: "http://10.0.0.9", Capacity: 10})
	reg.Observe(&workerv1.Heartbeat{WorkerId: "w1", Region: "eu", GrpcAddr: "elsewhere:1", HttpAddr: "http://elsewhere", Capacity: 99, Current: 7})
	if got := reg.List(); len(got) != 1 || got[0].ID != "w1" {
		t.Fatalf("members %+v", got)
	}
	if w, _ := reg.Get("w1"); w.Current != 7 || w.Capacity != 10 || w.GRPCAddr != "127.0.0.1:9090" {
		t.Fatalf("a beat carries the load only: %+v", w)
	}
	// A stranger that registers later comes in with the load it beat.
	reg.Observe(&workerv1.Heartbeat{WorkerId: "w2", Region: "eu", Current: 3, Capacity: 10})
	register(t, fake, "eu", "w2")
	eventually(t, "w2", func() bool { w, ok := reg.Get("w2"); return ok && w.Current == 3 })
}

// BenchmarkConsulCriticalToRemoval measures the time from a worker's check
// going critical in Consul to its removal from placement.
func BenchmarkConsulCriticalToRemoval(b *testing.B) {
	fake := consultest.New(b, "eu")
	reg, _ := watched(b, fake)
	register(b, fake, "eu", "w1")
	var total time.Duration
	for range b.N {
		fake.SetStatus("eu", "w1", consultest.Passing)
		eventually(b, "member", func() bool { _, ok := reg.Get("w1"); return ok })
		start := time.Now()
		fake.SetStatus("eu", "w1", consultest.Critical)
		for {
			if _, ok := reg.Get("w1"); !ok {
				break
			}
			time.Sleep(50 * time.Microsecond)
		}
		total += time.Since(start)
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N)/1000, "ms/removal")
}
