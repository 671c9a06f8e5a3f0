package autoscaler

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/opensandbox/opensandbox/services/controlplane/internal/registry"
	"github.com/prometheus/client_golang/prometheus"
)

// Config holds the scaler's thresholds; zero values take the defaults.
type Config struct {
	Interval      time.Duration // between checks (10s)
	High, Low     float64       // utilisation marks (0.70, 0.30)
	Sustain       time.Duration // above High this long before scaling up (30s)
	UpCooldown    time.Duration // after a launch, no other change for this long (2m)
	DownCooldown  time.Duration // between two scale-ins (5m)
	Min, Max      int           // machines of the pool per region (1, 10)
	DrainDeadline time.Duration // longest wait for a drained worker's sandboxes (24h)
}

// WithDefaults fills in zero values.
func (c Config) WithDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.Interval, 10*time.Second)
	def(&c.Sustain, 30*time.Second)
	def(&c.UpCooldown, 2*time.Minute)
	def(&c.DownCooldown, 5*time.Minute)
	def(&c.DrainDeadline, 24*time.Hour)
	if c.High == 0 {
		c.High = 0.70
	}
	if c.Low == 0 {
		c.Low = 0.30
	}
	if c.Max == 0 {
		c.Max = 10
	}
	return c
}

// Validate checks the thresholds.
func (c Config) Validate() error {
	switch {
	case c.Low < 0 || c.High > 1 || c.Low >= c.High:
		return fmt.Errorf("autoscaler: want 0 <= low (%v) < high (%v) <= 1", c.Low, c.High)
	case c.Min < 0 || c.Max < 1 || c.Min > c.Max:
		return fmt.Errorf("autoscaler: want 0 <= min (%d) <= max (%d), max >= 1", c.Min, c.Max)
	case c.Interval <= 0 || c.Sustain < 0 || c.UpCooldown < 0 || c.DownCooldown < 0 || c.DrainDeadline <= 0:
		return fmt.Errorf("autoscaler: durations must be positive")
	}
	return nil
}

// Workers is the live view of the workers (registry.Registry).
type Workers interface {
	Region(region string) []registry.Worker
}

// WorkerControl reaches a worker: drain it, and end what it still runs at
// the drain deadline.
type WorkerControl interface {
	// SetDraining drains (or not) the worker and returns its running sandboxes.
	SetDraining(ctx context.Context, w registry.Worker, on bool) (running int, err error)
	// DestroyAll ends every sandbox of the worker (past the drain deadline).
	DestroyAll(ctx context.Context, w registry.Worker) (int, error)
}

// Leader tells whether this control plane is the one scaler of a region.
type Leader interface {
	Lead(ctx context.Context, region string) bool
}

// Decision is what one check of a region did.
type Decision struct {
	Region    string    `json:"region"`
	Direction string    `json:"direction"` // up, drain, terminate, none
	Reason    string    `json:"reason"`
	Machine   string    `json:"machine,omitempty"`
	At        time.Time `json:"at"`
	Took      float64   `json:"tookSeconds"` // time from the start of the check to the decision
}

// RegionState is GET /autoscaler's view of one region.
type RegionState struct {
	Region       string     `json:"region"`
	Pool         string     `json:"pool"`
	Leader       bool       `json:"leader"`
	Utilisation  float64    `json:"utilisation"`
	Running      int        `json:"running"`
	Capacity     int        `json:"capacity"`
	Machines     []Machine  `json:"machines"`
	Desired      int        `json:"desired"`
	AboveSince   *time.Time `json:"aboveHighSince,omitempty"`
	LastDecision *Decision  `json:"lastDecision,omitempty"`
	Error        string     `json:"error,omitempty"`
}

// Metrics are the scaler's Prometheus metrics.
type Metrics struct {
	Utilisation *prometheus.GaugeVec
	Desired     *prometheus.GaugeVec
	Actual      *prometheus.GaugeVec
	Leader      *prometheus.GaugeVec
	Decisions   *prometheus.CounterVec
	Latency     prometheus.Histogram
}

// NewMetrics registers the scaler's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Utilisation: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "opensandbox_autoscaler_utilisation",
			Help: "Running sandboxes / capacity of the workers not draining, by region (at the last check)."}, []string{"region"}),
		Desired: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "opensandbox_autoscaler_desired_machines",
			Help: "Machines the scaler wants in the region (not draining)."}, []string{"region"}),
		Actual: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "opensandbox_autoscaler_machines",
			Help: "Machines of the pool in the region, draining ones included."}, []string{"region"}),
		Leader: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "opensandbox_autoscaler_leader",
			Help: "1 where this control plane is the region's scaler."}, []string{"region"}),
		Decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "opensandbox_autoscaler_decisions_total",
			Help: "Scaling actions by region and direction (up, drain, terminate) and failed ones (error)."}, []string{"region", "direction"}),
		Latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "opensandbox_autoscaler_decision_seconds",
			Help:    "Time from the start of a region's check to its decision (pool and worker calls included).",
			Buckets: []float64{.0001, .0005, .001, .005, .01, .05, .1, .5, 1, 5}}),
	}
	reg.MustRegister(m.Utilisation, m.Desired, m.Actual, m.Leader, m.Decisions, m.Latency)
	return m
}

// drain is a machine being drained.
type drain struct {
	machine   Machine
	worker    registry.Worker
	deadline  time.Time
	idleSince time.Time // when its worker first reported no sandbox
}

// settle is how long a drained worker must run no sandbox before its
// machine goes: a sandbox that just ended is still being removed, and its
// last events recorded and published, for a moment after it left the
// worker's count.
const settle = 2 * time.Second

type regionState struct {
	aboveSince time.Time
	lastUp     time.Time
	lastDown   time.Time
	drains     map[string]*drain // by machine ID
	view       RegionState
}

// Scaler runs the checks.
type Scaler struct {
	log     *slog.Logger
	cfg     Config
	pool    Pool
	workers Workers
	control WorkerControl
	leader  Leader
	metrics *Metrics
	now     func() time.Time

	mu      sync.Mutex
	regions map[string]*regionState
}

// New returns a scaler; Run starts it.
func New(log *slog.Logger, cfg Config, pool Pool, workers Workers, control WorkerControl, leader Leader, m *Metrics) (*Scaler, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Scaler{log: log, cfg: cfg, pool: pool, workers: workers, control: control, leader: leader, metrics: m,
		now: time.Now, regions: map[string]*regionState{}}, nil
}

// Run checks every region every interval until ctx ends.
func (s *Scaler) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		for _, r := range s.pool.SupportedRegions() {
			s.Step(ctx, r)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// State returns every region's state, by region.
func (s *Scaler) State() []RegionState {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]RegionState, 0, len(s.regions))
	for _, st := range s.regions {
		v := st.view
		v.Machines = slices.Clone(v.Machines)
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b RegionState) int { return cmpString(a.Region, b.Region) })
	return out
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (s *Scaler) region(r string) *regionState {
	st, ok := s.regions[r]
	if !ok {
		st = &regionState{drains: map[string]*drain{}}
		s.regions[r] = st
	}
	return st
}

// Step runs one check of a region and returns its decision. Steps of one
// scaler never overlap (Run calls them in turn).
func (s *Scaler) Step(ctx context.Context, region string) Decision {
	start := s.now()
	s.mu.Lock()
	st := s.region(region)
	s.mu.Unlock()
	view := RegionState{Region: region, Pool: s.pool.Name()}
	d := s.decide(ctx, region, st, &view, start)
	d.Region, d.At = region, s.now()
	d.Took = d.At.Sub(start).Seconds()
	if !st.aboveSince.IsZero() {
		t := st.aboveSince
		view.AboveSince = &t
	}
	s.mu.Lock()
	if d.Direction != "none" || st.view.LastDecision == nil {
		dd := d
		view.LastDecision = &dd
	} else {
		view.LastDecision = st.view.LastDecision
	}
	st.view = view
	s.mu.Unlock()
	if s.metrics != nil {
		s.metrics.Leader.WithLabelValues(region).Set(b2f(view.Leader))
		if view.Leader {
			s.metrics.Utilisation.WithLabelValues(region).Set(view.Utilisation)
			s.metrics.Desired.WithLabelValues(region).Set(float64(view.Desired))
			s.metrics.Actual.WithLabelValues(region).Set(float64(len(view.Machines)))
			s.metrics.Latency.Observe(d.Took)
		}
		if d.Direction != "none" {
			s.metrics.Decisions.WithLabelValues(region, d.Direction).Inc()
		}
	}
	if d.Direction != "none" {
		s.log.Info("autoscaler decision", "region", region, "direction", d.Direction, "reason", d.Reason, "machine", d.Machine,
			"utilisation", view.Utilisation, "running", view.Running, "capacity", view.Capacity, "machines", len(view.Machines), "took", time.Duration(d.Took*float64(time.Second)))
	}
	return d
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func none(reason string) Decision { return Decision{Direction: "none", Reason: reason} }

func (s *Scaler) decide(ctx context.Context, region string, st *regionState, view *RegionState, now time.Time) Decision {
	if !s.leader.Lead(ctx, region) {
		st.aboveSince = time.Time{}
		return none("not the leader")
	}
	view.Leader = true
	machines, err := s.pool.Machines(ctx, region)
	if err != nil {
		view.Error = err.Error()
		return Decision{Direction: "error", Reason: "list machines: " + err.Error()}
	}
	workers := map[string]registry.Worker{}
	for _, w := range s.workers.Region(region) {
		workers[w.ID] = w
	}
	// Machines being drained: removed once their worker runs nothing (or
	// is gone), or at the deadline.
	for id := range st.drains {
		if !slices.ContainsFunc(machines, func(m Machine) bool { return m.ID == id }) {
			delete(st.drains, id) // gone by other means
		}
	}
	for i := range machines {
		if _, ok := st.drains[machines[i].ID]; ok {
			machines[i].State = StateDraining
		}
	}
	view.Machines = machines

	active, pending := 0, 0
	for _, m := range machines {
		if m.State == StateRunning || m.State == StatePending {
			active++
			if _, ok := workers[m.WorkerID]; !ok {
				pending++
			}
		}
	}
	for _, w := range workers {
		if !w.Draining {
			view.Running += w.Current
			view.Capacity += w.Capacity
		}
	}
	if view.Capacity > 0 {
		view.Utilisation = float64(view.Running) / float64(view.Capacity)
	}
	view.Desired = active
	if d, done := s.finishDrains(ctx, st, machines, workers, now); done {
		if d.Direction == "terminate" {
			view.Machines = slices.DeleteFunc(machines, func(m Machine) bool { return m.ID == d.Machine })
		}
		return d
	}
	s.protect(ctx, machines, workers)

	if view.Utilisation >= s.cfg.High {
		if st.aboveSince.IsZero() {
			st.aboveSince = now
		}
	} else {
		st.aboveSince = time.Time{}
	}
	switch {
	case active < s.cfg.Min:
		return s.launch(ctx, region, st, view, now, fmt.Sprintf("%d machines, below the minimum %d", active, s.cfg.Min))
	case view.Utilisation >= s.cfg.High:
		switch {
		case active >= s.cfg.Max:
			return none("at the maximum")
		case now.Sub(st.aboveSince) < s.cfg.Sustain:
			return none("above the high-water mark, not yet for long")
		case now.Sub(st.lastUp) < s.cfg.UpCooldown:
			return none("in the scale-up cooldown")
		case pending > 0:
			return none("a launched machine is not serving yet")
		}
		return s.launch(ctx, region, st, view, now, fmt.Sprintf("utilisation %.2f >= %.2f for %s", view.Utilisation, s.cfg.High, now.Sub(st.aboveSince).Round(time.Millisecond)))
	case view.Utilisation < s.cfg.Low && active > s.cfg.Min:
		switch {
		case len(st.drains) > 0:
			return none("a drain is in progress")
		case now.Sub(st.lastDown) < s.cfg.DownCooldown, now.Sub(st.lastUp) < s.cfg.UpCooldown:
			return none("in a cooldown")
		}
		return s.scaleIn(ctx, region, st, view, machines, workers, now)
	}
	return none("within the marks")
}

func (s *Scaler) launch(ctx context.Context, region string, st *regionState, view *RegionState, now time.Time, reason string) Decision {
	m, err := s.pool.Launch(ctx, region)
	if err != nil {
		view.Error = err.Error()
		return Decision{Direction: "error", Reason: "launch (" + reason + "): " + err.Error()}
	}
	st.lastUp, st.aboveSince = now, time.Time{}
	view.Machines = append(view.Machines, m)
	view.Desired++
	return Decision{Direction: "up", Reason: reason, Machine: m.ID}
}

// scaleIn drains the least-loaded machine whose worker serves, when the
// others can carry its load below the high-water mark.
func (s *Scaler) scaleIn(ctx context.Context, region string, st *regionState, view *RegionState, machines []Machine, workers map[string]registry.Worker, now time.Time) Decision {
	var pick *Machine
	var pw registry.Worker
	for i, m := range machines {
		w, ok := workers[m.WorkerID]
		if !ok || w.Draining || m.State != StateRunning {
			continue
		}
		if pick == nil || w.Load() < pw.Load() || (w.Load() == pw.Load() && w.Current < pw.Current) {
			pick, pw = &machines[i], w
		}
	}
	if pick == nil {
		return none("no serving machine to drain")
	}
	if left := view.Capacity - pw.Capacity; left <= 0 || float64(view.Running)/float64(left) >= s.cfg.High {
		return none("the others could not carry the load")
	}
	if err := s.pool.Drain(ctx, *pick); err != nil {
		return Decision{Direction: "error", Reason: "drain " + pick.ID + ": " + err.Error()}
	}
	running, err := s.control.SetDraining(ctx, pw, true)
	if err != nil {
		return Decision{Direction: "error", Reason: "drain worker " + pw.ID + ": " + err.Error()}
	}
	st.drains[pick.ID] = &drain{machine: *pick, worker: pw, deadline: now.Add(s.cfg.DrainDeadline)}
	st.lastDown = now
	pick.State = StateDraining
	view.Desired--
	return Decision{Direction: "drain", Machine: pick.ID,
		Reason: fmt.Sprintf("utilisation %.2f < %.2f; least loaded, %d sandboxes left to end", view.Utilisation, s.cfg.Low, running)}
}

// finishDrains removes drained machines whose worker runs nothing now;
// past the deadline it ends what is left first.
func (s *Scaler) finishDrains(ctx context.Context, st *regionState, machines []Machine, workers map[string]registry.Worker, now time.Time) (Decision, bool) {
	for id, dr := range st.drains {
		if i := slices.IndexFunc(machines, func(m Machine) bool { return m.ID == id }); i >= 0 {
			dr.machine.Protected = machines[i].Protected
		}
		w, serving := workers[dr.worker.ID]
		running := 0
		if serving {
			n, err := s.control.SetDraining(ctx, w, true) // also re-drains a worker that restarted
			if err != nil {
				s.log.Warn("autoscaler: drained worker unreachable", "worker_id", w.ID, "err", err)
				continue
			}
			running = n
		}
		reason := "drained: no sandbox left"
		if running == 0 && serving {
			if dr.idleSince.IsZero() {
				dr.idleSince = now
			}
			if now.Sub(dr.idleSince) < settle {
				continue
			}
		}
		if running > 0 {
			dr.idleSince = time.Time{}
			if now.Before(dr.deadline) {
				continue
			}
			n, err := s.control.DestroyAll(ctx, w)
			if err != nil {
				return Decision{Direction: "error", Reason: "end sandboxes past the drain deadline: " + err.Error()}, true
			}
			reason = fmt.Sprintf("drain deadline passed: %d sandboxes ended", n)
			s.log.Warn("autoscaler: drain deadline passed", "worker_id", w.ID, "sandboxes", n)
		}
		if err := s.pool.Terminate(ctx, dr.machine); err != nil {
			return Decision{Direction: "error", Reason: "terminate " + id + ": " + err.Error()}, true
		}
		delete(st.drains, id)
		return Decision{Direction: "terminate", Machine: id, Reason: reason}, true
	}
	return Decision{}, false
}

// protect keeps scale-in protection on exactly the busy machines (running
// sandboxes), where the pool has it, so the pool's own scale-in (AWS
// rebalancing, someone lowering the desired capacity) never picks one.
func (s *Scaler) protect(ctx context.Context, machines []Machine, workers map[string]registry.Worker) {
	p, ok := s.pool.(Protector)
	if !ok {
		return
	}
	for i, m := range machines {
		w, serving := workers[m.WorkerID]
		if !serving {
			continue
		}
		busy := w.Current > 0
		if m.Protected == busy {
			continue
		}
		if err := p.Protect(ctx, m, busy); err != nil {
			s.log.Warn("autoscaler: scale-in protection", "machine", m.ID, "on", busy, "err", err)
			continue
		}
		machines[i].Protected = busy
	}
}
