// Package heartbeat announces a worker to the control plane: every few
// seconds it publishes a workerv1.Heartbeat on workers.heartbeat.<region>.<id>
// with the worker's addresses, capacity, live sandbox count and host load.
package heartbeat

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/natsx"
	"github.com/opensandbox/opensandbox/services/shared/proto/workerv1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// DefaultInterval is how often a worker beats; the control plane drops a
// worker after three missed beats.
const DefaultInterval = 5 * time.Second

// Publisher sends a message (a *nats.Conn).
type Publisher interface {
	Publish(subject string, data []byte) error
}

// Counter reports the live sandboxes (the sandbox manager).
type Counter interface {
	Count() int
}

// Config describes the worker being announced.
type Config struct {
	WorkerID string
	Region   string
	GRPCAddr string // host:port the control plane dials
	HTTPAddr string // base URL SDKs connect to
	Capacity int
	Interval time.Duration
	Version  string
}

// Validate checks the configuration.
func (c Config) Validate() error {
	switch {
	case c.WorkerID == "" || c.Region == "":
		return errors.New("heartbeat: worker id and region are required")
	case c.GRPCAddr == "" || c.HTTPAddr == "":
		return errors.New("heartbeat: gRPC and HTTP addresses are required")
	case c.Capacity <= 0:
		return errors.New("heartbeat: capacity must be positive")
	}
	return nil
}

// Heartbeat publishes beats until its context ends.
type Heartbeat struct {
	log      *slog.Logger
	pub      Publisher
	cfg      Config
	counter  Counter
	host     *hostStats
	draining atomic.Bool
}

// SetDraining marks the worker as shutting down (or not): its beats say so
// and placement sends it no new sandbox. Beat at once after setting it.
func (h *Heartbeat) SetDraining(v bool) { h.draining.Store(v) }

// New returns a heartbeat; Run starts it.
func New(log *slog.Logger, pub Publisher, cfg Config, counter Counter) (*Heartbeat, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	return &Heartbeat{log: log, pub: pub, cfg: cfg, counter: counter, host: newHostStats()}, nil
}

// Subject is where this worker's beats go.
func (h *Heartbeat) Subject() string { return natsx.HeartbeatSubject(h.cfg.Region, h.cfg.WorkerID) }

// Message builds the current beat.
func (h *Heartbeat) Message() *workerv1.Heartbeat {
	cpu, mem := h.host.sample()
	return &workerv1.Heartbeat{
		WorkerId: h.cfg.WorkerID, Region: h.cfg.Region,
		GrpcAddr: h.cfg.GRPCAddr, HttpAddr: h.cfg.HTTPAddr,
		Capacity: int32(h.cfg.Capacity), Current: int32(h.counter.Count()),
		CpuPct: cpu, MemPct: mem,
		Time: timestamppb.Now(), Version: h.cfg.Version,
		Draining: h.draining.Load(),
	}
}

// Beat publishes one beat now.
func (h *Heartbeat) Beat() error {
	b, err := proto.Marshal(h.Message())
	if err != nil {
		return err
	}
	return h.pub.Publish(h.Subject(), b)
}

// Run beats at once and then every interval until ctx ends.
func (h *Heartbeat) Run(ctx context.Context) error {
	t := time.NewTicker(h.cfg.Interval)
	defer t.Stop()
	for {
		if err := h.Beat(); err != nil {
			h.log.Warn("heartbeat not published", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
