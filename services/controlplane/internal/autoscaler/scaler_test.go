package autoscaler

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/opensandbox/opensandbox/services/controlplane/internal/registry"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// memPool is an in-memory Pool for the scaler's logic (the real pools have
// their own tests: local for real, Nomad and EC2 against contract servers).
type memPool struct {
	mu       sync.Mutex
	machines []Machine
	calls    []string
	n        int
}

func (p *memPool) Name() string               { return "mem" }
func (p *memPool) SupportedRegions() []string { return []string{"eu"} }
func (p *memPool) Machines(context.Context, string) ([]Machine, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Machine(nil), p.machines...), nil
}
func (p *memPool) Launch(_ context.Context, region string) (Machine, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	m := Machine{ID: fmt.Sprintf("m%d", p.n), Region: region, WorkerID: fmt.Sprintf("w%d", p.n), State: StateRunning}
	p.machines = append(p.machines, m)
	p.calls = append(p.calls, "launch "+m.ID)
	return m, nil
}
func (p *memPool) Drain(_ context.Context, m Machine) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, "drain "+m.ID)
	return nil
}
func (p *memPool) Terminate(_ context.Context, m Machine) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, "terminate "+m.ID)
	for i := range p.machines {
		if p.machines[i].ID == m.ID {
			p.machines = append(p.machines[:i], p.machines[i+1:]...)
			break
		}
	}
	return nil
}
func (p *memPool) Protect(_ context.Context, m Machine, on bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, fmt.Sprintf("protect %s %v", m.ID, on))
	for i := range p.machines {
		if p.machines[i].ID == m.ID {
			p.machines[i].Protected = on
		}
	}
	return nil
}

// fleet is the workers of the pool's machines, with their sandbox counts.
type fleet struct {
	mu       sync.Mutex
	current  map[string]int
	draining map[string]bool
	destroys []string
}

func (f *fleet) Region(string) []registry.Worker {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []registry.Worker
	for id, n := range f.current {
		out = append(out, registry.Worker{ID: id, Region: "eu", Capacity: 10, Current: n, Draining: f.draining[id]})
	}
	return out
}
func (f *fleet) SetDraining(_ context.Context, w registry.Worker, on bool) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.draining[w.ID] = on
	return f.current[w.ID], nil
}
func (f *fleet) DestroyAll(_ context.Context, w registry.Worker) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.current[w.ID]
	f.current[w.ID] = 0
	f.destroys = append(f.destroys, w.ID)
	return n, nil
}
func (f *fleet) set(id string, n int) { f.mu.Lock(); f.current[id] = n; f.mu.Unlock() }

type always bool

func (a always) Lead(context.Context, string) bool { return bool(a) }

func TestScalerDecisions(t *testing.T) {
	pool := &memPool{}
	fl := &fleet{current: map[string]int{}, draining: map[string]bool{}}
	m := NewMetrics(prometheus.NewRegistry())
	s, err := New(quiet, Config{Sustain: 20 * time.Second, UpCooldown: time.Minute, DownCooldown: time.Minute, Min: 1, Max: 3, DrainDeadline: time.Hour},
		pool, fl, fl, always(true), m)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_000_000, 0)
	s.now = func() time.Time { return now }
	step := func(want string) Decision {
		t.Helper()
		d := s.Step(context.Background(), "eu")
		if d.Direction != want {
			t.Fatalf("at +%s: decision %+v, want %s", now.Sub(time.Unix(1_000_000, 0)), d, want)
		}
		return d
	}
	step("up") // below the minimum
	step("none")
	fl.set("w1", 0) // its worker serves
	step("none")

	fl.set("w1", 8) // 80%: above, but not for 20s
	step("none")
	now = now.Add(10 * time.Second)
	step("none")
	now = now.Add(51 * time.Second) // sustained, and past the first launch's cooldown
	if d := step("up"); d.Machine != "m2" {
		t.Fatalf("launched %s", d.Machine)
	}
	now = now.Add(30 * time.Second)
	step("none") // m2's worker not serving yet
	fl.set("w2", 3)
	step("none") // 11/20 = 55%: within the marks
	if pool.machines[0].Protected != true || pool.machines[1].Protected != true {
		t.Fatalf("busy machines not protected: %+v", pool.machines)
	}

	// Quiet: 2/20 = 10%. The least-loaded (w1 with 1) is drained, and stays
	// until its last sandbox ends.
	fl.set("w1", 1)
	fl.set("w2", 1)
	now = now.Add(2 * time.Minute)
	fl.set("w2", 2) // make w1 the least loaded
	d := step("drain")
	if d.Machine != "m1" || !fl.draining["w1"] {
		t.Fatalf("drained %+v (draining %v)", d, fl.draining)
	}
	now = now.Add(5 * time.Minute)
	step("none") // w1 still runs a sandbox: never killed early
	fl.set("w1", 0)
	step("none") // idle: removed once that held for a moment
	now = now.Add(3 * time.Second)
	if d := step("terminate"); d.Machine != "m1" {
		t.Fatalf("terminated %+v", d)
	}
	if len(fl.destroys) != 0 {
		t.Fatalf("sandboxes destroyed: %v", fl.destroys)
	}
	want := []string{"launch m1", "protect m1 true", "launch m2", "protect m2 true", "drain m1", "protect m1 false", "terminate m1"}
	if fmt.Sprint(pool.calls) != fmt.Sprint(want) {
		t.Fatalf("calls %v\nwant  %v", pool.calls, want)
	}
	if got := testutil.ToFloat64(m.Decisions.WithLabelValues("eu", "up")); got != 2 {
		t.Fatalf("up decisions %v", got)
	}
	st := s.State()
	if len(st) != 1 || !st[0].Leader || st[0].LastDecision == nil || st[0].LastDecision.Direction != "terminate" || len(st[0].Machines) != 1 {
		t.Fatalf("state %+v", st)
	}
}

// Past the drain deadline the drained worker's sandboxes are ended, then
// the machine removed; a follower never acts.
func TestScalerDrainDeadlineAndFollower(t *testing.T) {
	pool := &memPool{}
	fl := &fleet{current: map[string]int{}, draining: map[string]bool{}}
	s, _ := New(quiet, Config{Sustain: 1, UpCooldown: 1, DownCooldown: 1, Min: 1, Max: 3, DrainDeadline: time.Minute}, pool, fl, fl, always(true), nil)
	now := time.Unix(1_000_000, 0)
	s.now = func() time.Time { return now }
	ctx := context.Background()
	pool.Launch(ctx, "eu")
	pool.Launch(ctx, "eu")
	fl.set("w1", 1)
	fl.set("w2", 0)
	now = now.Add(time.Second)
	if d := s.Step(ctx, "eu"); d.Direction != "drain" || d.Machine != "m2" {
		t.Fatalf("%+v", d)
	}
	fl.set("w2", 1) // (a sandbox that outlives the deadline)
	now = now.Add(30 * time.Second)
	if d := s.Step(ctx, "eu"); d.Direction != "none" {
		t.Fatalf("before the deadline: %+v", d)
	}
	now = now.Add(31 * time.Second)
	if d := s.Step(ctx, "eu"); d.Direction != "terminate" || len(fl.destroys) != 1 {
		t.Fatalf("after the deadline: %+v, destroys %v", d, fl.destroys)
	}

	follower, _ := New(quiet, Config{Min: 5}, pool, fl, fl, always(false), nil)
	if d := follower.Step(ctx, "eu"); d.Direction != "none" || len(pool.machines) != 1 {
		t.Fatalf("follower acted: %+v", d)
	}
}

// BenchmarkScalerDecision measures a region's check with 50 workers (the
// pool and workers in memory): the scaler's own decision latency.
func BenchmarkScalerDecision(b *testing.B) {
	pool := &memPool{}
	fl := &fleet{current: map[string]int{}, draining: map[string]bool{}}
	for i := range 50 {
		m, _ := pool.Launch(context.Background(), "eu")
		fl.set(m.WorkerID, i%10)
	}
	s, _ := New(quiet, Config{Min: 1, Max: 100}, pool, fl, fl, always(true), NewMetrics(prometheus.NewRegistry()))
	b.ResetTimer()
	for range b.N {
		s.Step(context.Background(), "eu")
	}
}
