// Package registry keeps the control plane's in-memory view of its workers.
// By default NATS heartbeats are both membership and load: a worker that
// misses beats for StaleAfter is dropped and reported to OnDrop (its
// sandboxes are failed, not migrated). With an external membership source
// (Consul, see Sync) that source alone decides who is in; heartbeats then
// only carry the live load of the members.
package registry

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/opensandbox/opensandbox/services/shared/natsx"
	"github.com/opensandbox/opensandbox/services/shared/proto/workerv1"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
)

// DefaultStaleAfter is three missed 5-second beats.
const DefaultStaleAfter = 15 * time.Second

// Worker is what the registry knows about one worker.
type Worker struct {
	ID       string    `json:"worker_id"`
	Region   string    `json:"region"`
	GRPCAddr string    `json:"grpc_addr"`
	HTTPAddr string    `json:"http_addr"`
	Capacity int       `json:"capacity"`
	Current  int       `json:"current"`
	CPUPct   float64   `json:"cpu_pct"`
	MemPct   float64   `json:"mem_pct"`
	Version  string    `json:"version,omitempty"`
	Draining bool      `json:"draining,omitempty"` // shutting down or drained: no new sandboxes
	LastSeen time.Time `json:"last_heartbeat"`
	// Lost says why a dropped worker left (for OnDrop).
	Lost string `json:"-"`

	memberDraining bool // the membership source says draining
	beatDraining   bool // the last heartbeat says draining
}

// Load is the worker's fill ratio, the placement score (lower is better).
func (w Worker) Load() float64 {
	if w.Capacity <= 0 {
		return 1
	}
	return float64(w.Current) / float64(w.Capacity)
}

// Full reports a worker with no free slot.
func (w Worker) Full() bool { return w.Current >= w.Capacity }

// Metrics are the registry's Prometheus metrics.
type Metrics struct {
	Workers      *prometheus.GaugeVec
	HeartbeatAge *prometheus.GaugeVec
	Lost         prometheus.Counter
	Beats        prometheus.Counter
}

// NewMetrics registers the registry's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Workers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "opensandbox_registry_workers", Help: "Healthy workers in the registry, by region.",
		}, []string{"region"}),
		HeartbeatAge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "opensandbox_worker_heartbeat_age_seconds", Help: "Seconds since each worker's last heartbeat (at the last sweep).",
		}, []string{"worker_id"}),
		Lost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "opensandbox_workers_lost_total", Help: "Workers dropped: heartbeats missed, or critical or gone in Consul.",
		}),
		Beats: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "opensandbox_heartbeats_received_total", Help: "Worker heartbeats received.",
		}),
	}
	reg.MustRegister(m.Workers, m.HeartbeatAge, m.Lost, m.Beats)
	return m
}

// Config configures a registry.
type Config struct {
	StaleAfter time.Duration
	// OnDrop (optional) is called, outside the registry's lock, for each
	// worker dropped as stale.
	OnDrop func(Worker)
	// OnJoin (optional) is called, in its own goroutine, for each worker
	// that joins: a new one, one that was dropped and came back, or every
	// worker after the control plane restarted. The control plane
	// reconciles its sessions with what the worker really runs.
	OnJoin func(Worker)
	// External: membership comes from Sync (Consul); heartbeats of workers
	// that are not members are kept aside and only fill in their load.
	External bool
}

// Registry is the set of live workers.
type Registry struct {
	log     *slog.Logger
	cfg     Config
	metrics *Metrics
	now     func() time.Time

	mu      sync.RWMutex
	workers map[string]*Worker
	beats   map[string]*Worker // External: the last heartbeat of each worker
}

// New returns an empty registry.
func New(log *slog.Logger, cfg Config, m *Metrics) *Registry {
	if cfg.StaleAfter <= 0 {
		cfg.StaleAfter = DefaultStaleAfter
	}
	return &Registry{log: log, cfg: cfg, metrics: m, now: time.Now, workers: map[string]*Worker{}, beats: map[string]*Worker{}}
}

// Observe takes a heartbeat.
func (r *Registry) Observe(hb *workerv1.Heartbeat) {
	if hb.GetWorkerId() == "" {
		return
	}
	w := Worker{
		ID: hb.GetWorkerId(), Region: hb.GetRegion(), GRPCAddr: hb.GetGrpcAddr(), HTTPAddr: hb.GetHttpAddr(),
		Capacity: int(hb.GetCapacity()), Current: int(hb.GetCurrent()), CPUPct: hb.GetCpuPct(), MemPct: hb.GetMemPct(),
		Version: hb.GetVersion(), Draining: hb.GetDraining(), beatDraining: hb.GetDraining(), LastSeen: r.now(),
	}
	if r.cfg.External {
		r.observeLoad(w)
		return
	}
	r.mu.Lock()
	_, known := r.workers[w.ID]
	r.workers[w.ID] = &w
	r.mu.Unlock()
	if !known {
		r.log.Info("worker joined", "worker_id", w.ID, "region", w.Region, "grpc_addr", w.GRPCAddr, "http_addr", w.HTTPAddr, "capacity", w.Capacity, "draining", w.Draining)
		if r.cfg.OnJoin != nil {
			go r.cfg.OnJoin(w)
		}
	}
	if r.metrics != nil {
		r.metrics.Beats.Inc()
	}
	r.updateGauges()
}

// observeLoad takes a heartbeat when membership is external: it updates
// the load of a member, and is kept for a worker that is not one (yet).
func (r *Registry) observeLoad(hb Worker) {
	r.mu.Lock()
	r.beats[hb.ID] = &hb
	if w, ok := r.workers[hb.ID]; ok {
		w.Current, w.CPUPct, w.MemPct, w.LastSeen = hb.Current, hb.CPUPct, hb.MemPct, hb.LastSeen
		w.beatDraining = hb.beatDraining
		w.Draining = w.memberDraining || w.beatDraining
	}
	r.mu.Unlock()
	if r.metrics != nil {
		r.metrics.Beats.Inc()
	}
}

// Sync sets the members of a region, as the membership source (Consul) sees
// them: healthy workers only. Members that are missing now are dropped
// (OnDrop: their sessions fail), new ones join (OnJoin). Addresses,
// capacity and draining come from the source; the load from heartbeats.
func (r *Registry) Sync(region string, members []Worker) {
	now := r.now()
	seen := make(map[string]bool, len(members))
	var joined, dropped []Worker
	r.mu.Lock()
	for _, m := range members {
		m.Region = region
		seen[m.ID] = true
		w, ok := r.workers[m.ID]
		if !ok {
			w = &Worker{ID: m.ID, LastSeen: now}
			if hb, ok := r.beats[m.ID]; ok {
				w.Current, w.CPUPct, w.MemPct, w.LastSeen, w.beatDraining = hb.Current, hb.CPUPct, hb.MemPct, hb.LastSeen, hb.beatDraining
			}
			r.workers[m.ID] = w
		}
		w.Region, w.GRPCAddr, w.HTTPAddr, w.Capacity, w.Version = region, m.GRPCAddr, m.HTTPAddr, m.Capacity, m.Version
		w.memberDraining = m.Draining
		w.Draining = w.memberDraining || w.beatDraining
		if !ok {
			joined = append(joined, *w)
		}
	}
	for id, w := range r.workers {
		if w.Region == region && !seen[id] {
			w.Lost = "critical or gone in Consul"
			dropped = append(dropped, *w)
			delete(r.workers, id)
		}
	}
	r.mu.Unlock()
	for _, w := range joined {
		r.log.Info("worker joined", "worker_id", w.ID, "region", w.Region, "grpc_addr", w.GRPCAddr, "http_addr", w.HTTPAddr, "capacity", w.Capacity, "draining", w.Draining, "source", "consul")
		if r.cfg.OnJoin != nil {
			go r.cfg.OnJoin(w)
		}
	}
	r.dropped(dropped)
	r.updateGauges()
}

// Placed counts a sandbox placed on a worker until its next heartbeat
// reports the real number, so that back-to-back placements spread out.
func (r *Registry) Placed(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if w, ok := r.workers[id]; ok {
		w.Current++
	}
}

// MarkFull records a worker that answered "full" until its next heartbeat.
func (r *Registry) MarkFull(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if w, ok := r.workers[id]; ok && w.Current < w.Capacity {
		w.Current = w.Capacity
	}
}

// Get returns one worker.
func (r *Registry) Get(id string) (Worker, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	w, ok := r.workers[id]
	if !ok {
		return Worker{}, false
	}
	return *w, true
}

// Region returns the workers of a region.
func (r *Registry) Region(region string) []Worker {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Worker, 0, len(r.workers))
	for _, w := range r.workers {
		if w.Region == region {
			out = append(out, *w)
		}
	}
	return out
}

// List returns every worker, by region then id.
func (r *Registry) List() []Worker {
	r.mu.RLock()
	out := make([]Worker, 0, len(r.workers))
	for _, w := range r.workers {
		out = append(out, *w)
	}
	r.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Region != out[j].Region {
			return out[i].Region < out[j].Region
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Sweep drops the workers that missed their beats and returns them. With
// external membership it drops none: the source decides (a member whose
// beats stopped keeps its last load plus its placements).
func (r *Registry) Sweep() []Worker {
	now := r.now()
	var dropped []Worker
	r.mu.Lock()
	for id, w := range r.workers {
		age := now.Sub(w.LastSeen)
		if age > r.cfg.StaleAfter && !r.cfg.External {
			w.Lost = "no heartbeat for " + r.cfg.StaleAfter.String()
			dropped = append(dropped, *w)
			delete(r.workers, id)
			continue
		}
		if r.metrics != nil {
			r.metrics.HeartbeatAge.WithLabelValues(id).Set(age.Seconds())
		}
	}
	for id, hb := range r.beats {
		if now.Sub(hb.LastSeen) > 10*r.cfg.StaleAfter {
			delete(r.beats, id)
		}
	}
	r.mu.Unlock()
	r.dropped(dropped)
	if len(dropped) > 0 {
		r.updateGauges()
	}
	return dropped
}

// dropped reports workers that left.
func (r *Registry) dropped(dropped []Worker) {
	for _, w := range dropped {
		r.log.Warn("worker lost", "worker_id", w.ID, "region", w.Region, "reason", w.Lost, "last_heartbeat", w.LastSeen)
		if r.metrics != nil {
			r.metrics.Lost.Inc()
			r.metrics.HeartbeatAge.DeleteLabelValues(w.ID)
		}
		if r.cfg.OnDrop != nil {
			r.cfg.OnDrop(w)
		}
	}
}

func (r *Registry) updateGauges() {
	if r.metrics == nil {
		return
	}
	counts := map[string]int{}
	r.mu.RLock()
	for _, w := range r.workers {
		counts[w.Region]++
	}
	r.mu.RUnlock()
	r.metrics.Workers.Reset()
	for region, n := range counts {
		r.metrics.Workers.WithLabelValues(region).Set(float64(n))
	}
}

// Subscribe feeds the registry from the heartbeat subjects of nc.
func (r *Registry) Subscribe(nc *nats.Conn) (*nats.Subscription, error) {
	return nc.Subscribe(natsx.HeartbeatSubjs, func(m *nats.Msg) {
		var hb workerv1.Heartbeat
		if err := proto.Unmarshal(m.Data, &hb); err != nil {
			r.log.Warn("malformed heartbeat", "subject", m.Subject, "err", err)
			return
		}
		r.Observe(&hb)
	})
}

// Run sweeps every interval until ctx ends.
func (r *Registry) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.Sweep()
		}
	}
}
