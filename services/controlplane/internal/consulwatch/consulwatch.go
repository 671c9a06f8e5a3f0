// Package consulwatch feeds the registry from Consul (OPENSANDBOX_REGISTRY=
// consul): every datacenter of the catalog is a region, and in each a
// blocking health query on the opensandbox-worker service (index/wait, never
// a tight poll) tells which workers are in placement. A worker whose checks
// go critical, or that leaves the catalog, is out at the next answer, which
// Consul sends as soon as the change happens.
package consulwatch

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	consul "github.com/hashicorp/consul/api"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/registry"
	"github.com/opensandbox/opensandbox/services/worker/consulreg"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults.
const (
	DefaultWait      = 5 * time.Minute  // longest blocking query
	DefaultDCRefresh = 30 * time.Second // the datacenter list has no blocking form
)

// Syncer takes a region's members (registry.Registry).
type Syncer interface {
	Sync(region string, members []registry.Worker)
}

var _ Syncer = (*registry.Registry)(nil)

// Config configures a watcher.
type Config struct {
	Wait      time.Duration
	DCRefresh time.Duration
}

// Metrics count the answers of Consul by datacenter and result.
type Metrics struct {
	Queries *prometheus.CounterVec
}

// NewMetrics registers the watcher's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{Queries: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "opensandbox_consul_queries_total",
		Help: "Consul health queries of the worker service by datacenter and result (changed, unchanged, error).",
	}, []string{"datacenter", "result"})}
	reg.MustRegister(m.Queries)
	return m
}

// Watcher follows the workers of every datacenter.
type Watcher struct {
	log     *slog.Logger
	client  *consul.Client
	reg     Syncer
	cfg     Config
	metrics *Metrics
}

// New returns a watcher; Run starts it.
func New(log *slog.Logger, client *consul.Client, reg Syncer, cfg Config, m *Metrics) *Watcher {
	if cfg.Wait <= 0 {
		cfg.Wait = DefaultWait
	}
	if cfg.DCRefresh <= 0 {
		cfg.DCRefresh = DefaultDCRefresh
	}
	return &Watcher{log: log, client: client, reg: reg, cfg: cfg, metrics: m}
}

// Run watches until ctx ends: the datacenter list every DCRefresh, and one
// blocking query loop per datacenter.
func (w *Watcher) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	running := map[string]context.CancelFunc{}
	t := time.NewTicker(w.cfg.DCRefresh)
	defer t.Stop()
	for {
		dcs, err := w.client.Catalog().Datacenters()
		if err != nil {
			w.log.Warn("consul: list datacenters", "err", err)
		} else {
			now := map[string]bool{}
			for _, dc := range dcs {
				now[dc] = true
				if _, ok := running[dc]; !ok {
					dctx, cancel := context.WithCancel(ctx)
					running[dc] = cancel
					wg.Add(1)
					go func() { defer wg.Done(); w.watch(dctx, dc) }()
					w.log.Info("consul: watching datacenter", "datacenter", dc)
				}
			}
			for dc, cancel := range running {
				if !now[dc] {
					cancel()
					delete(running, dc)
					w.reg.Sync(dc, nil)
					w.log.Warn("consul: datacenter left the catalog; its workers are out", "datacenter", dc)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// watch runs the blocking health query of one datacenter until ctx ends.
// When Consul cannot be reached the last known members stay: an outage of
// the registry is not taken for the loss of every worker.
func (w *Watcher) watch(ctx context.Context, dc string) {
	var index uint64
	backoff := time.Second
	for ctx.Err() == nil {
		q := (&consul.QueryOptions{Datacenter: dc, WaitIndex: index, WaitTime: w.cfg.Wait}).WithContext(ctx)
		entries, meta, err := w.client.Health().Service(consulreg.Service, "", false, q)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			w.count(dc, "error")
			w.log.Warn("consul: health query", "datacenter", dc, "err", err, "retry_in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 30*time.Second)
			continue
		}
		backoff = time.Second
		switch {
		case meta.LastIndex == index:
			w.count(dc, "unchanged")
			continue
		case meta.LastIndex < index:
			index = 0 // Consul's index went backwards (a restored server): start over
		default:
			index = meta.LastIndex
		}
		w.count(dc, "changed")
		w.reg.Sync(dc, w.members(dc, entries))
	}
}

func (w *Watcher) count(dc, result string) {
	if w.metrics != nil {
		w.metrics.Queries.WithLabelValues(dc, result).Inc()
	}
}

// members turns health entries into the workers that may take sandboxes:
// every check not critical, and a complete registration.
func (w *Watcher) members(dc string, entries []*consul.ServiceEntry) []registry.Worker {
	out := make([]registry.Worker, 0, len(entries))
	for _, e := range entries {
		s := e.Service
		if s == nil || e.Checks.AggregatedStatus() == consul.HealthCritical {
			continue
		}
		capacity, _ := strconv.Atoi(s.Meta[consulreg.MetaCapacity])
		wk := registry.Worker{
			ID: s.ID, Region: dc, GRPCAddr: s.Meta[consulreg.MetaGRPCAddr], HTTPAddr: s.Meta[consulreg.MetaHTTPURL],
			Capacity: capacity, Version: s.Meta[consulreg.MetaVersion], Draining: s.Meta[consulreg.MetaDraining] == "true",
		}
		if wk.GRPCAddr == "" || wk.HTTPAddr == "" || capacity <= 0 {
			w.log.Warn("consul: incomplete worker registration skipped", "datacenter", dc, "service_id", s.ID)
			continue
		}
		if r := s.Meta[consulreg.MetaRegion]; r != dc {
			w.log.Warn("consul: worker's region differs from its datacenter; the datacenter wins", "datacenter", dc, "service_id", s.ID, "region", r)
		}
		out = append(out, wk)
	}
	return out
}
