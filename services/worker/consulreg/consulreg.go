// Package consulreg keeps a worker in the Consul catalog: it registers the
// service opensandbox-worker with the local Consul agent (ID = worker ID,
// meta: region, addresses, capacity, version, draining), keeps its TTL check
// passing while the worker is healthy, says when the worker drains, and
// deregisters it on shutdown. The control plane reads the catalog of every
// datacenter (a datacenter is a region) to know where it may place.
package consulreg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	consul "github.com/hashicorp/consul/api"
)

// Service is the Consul service name of workers.
const Service = "opensandbox-worker"

// Meta keys of a worker's registration.
const (
	MetaRegion   = "region"
	MetaHTTPURL  = "http_url"
	MetaGRPCAddr = "grpc_addr"
	MetaCapacity = "capacity"
	MetaVersion  = "version"
	MetaDraining = "draining"
	MetaWorkerID = "worker_id" // Prometheus labels the worker's metrics with it
)

// Defaults.
const (
	DefaultTTL             = 10 * time.Second
	DefaultDeregisterAfter = 10 * time.Minute
)

// Config describes the worker being registered.
type Config struct {
	WorkerID string
	Region   string
	HTTPURL  string // the connectURL SDKs use
	GRPCAddr string // host:port the control plane dials
	Capacity int
	Version  string
	// TTL of the check: the worker passes it every TTL/3; a worker that
	// stops (or whose health probe fails) goes critical within TTL.
	TTL time.Duration
	// DeregisterAfter removes a service critical this long (a machine gone
	// for good) from the catalog.
	DeregisterAfter time.Duration
}

// Probe reports the worker's health (nil: healthy); the check's output
// carries its error.
type Probe func(ctx context.Context) error

// Registrar registers one worker.
type Registrar struct {
	log    *slog.Logger
	agent  *consul.Agent
	cfg    Config
	probe  Probe
	mu     sync.Mutex
	drains bool
}

// New returns a registrar using client's agent endpoints; probe may be nil.
func New(log *slog.Logger, client *consul.Client, cfg Config, probe Probe) (*Registrar, error) {
	if cfg.WorkerID == "" || cfg.Region == "" || cfg.HTTPURL == "" || cfg.GRPCAddr == "" || cfg.Capacity <= 0 {
		return nil, errors.New("consulreg: worker id, region, addresses and capacity are required")
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.DeregisterAfter <= 0 {
		cfg.DeregisterAfter = DefaultDeregisterAfter
	}
	return &Registrar{log: log, agent: client.Agent(), cfg: cfg, probe: probe}, nil
}

// CheckID is the ID of the worker's TTL check.
func (r *Registrar) CheckID() string { return "service:" + r.cfg.WorkerID }

// registration is the service: its address is the one the cluster reaches
// the worker on (the gRPC address's host, a private address), its port the
// HTTP port, so DNS SRV answers and Prometheus find the worker inside the
// network; the public connectURL travels in the meta.
func (r *Registrar) registration() (*consul.AgentServiceRegistration, error) {
	u, err := url.Parse(r.cfg.HTTPURL)
	if err != nil {
		return nil, fmt.Errorf("consulreg: worker URL: %w", err)
	}
	_, portStr, err := net.SplitHostPort(u.Host)
	if err != nil {
		return nil, fmt.Errorf("consulreg: worker URL %q needs host:port: %w", r.cfg.HTTPURL, err)
	}
	host, _, err := net.SplitHostPort(r.cfg.GRPCAddr)
	if err != nil {
		return nil, fmt.Errorf("consulreg: gRPC address %q needs host:port: %w", r.cfg.GRPCAddr, err)
	}
	port, _ := strconv.Atoi(portStr)
	return &consul.AgentServiceRegistration{
		ID: r.cfg.WorkerID, Name: Service, Address: host, Port: port,
		Tags: []string{"region-" + r.cfg.Region},
		Meta: map[string]string{
			MetaRegion: r.cfg.Region, MetaHTTPURL: r.cfg.HTTPURL, MetaGRPCAddr: r.cfg.GRPCAddr,
			MetaCapacity: strconv.Itoa(r.cfg.Capacity), MetaVersion: r.cfg.Version,
			MetaDraining: strconv.FormatBool(r.drains), MetaWorkerID: r.cfg.WorkerID,
		},
		Check: &consul.AgentServiceCheck{
			CheckID: r.CheckID(), Name: "opensandbox worker " + r.cfg.WorkerID,
			TTL: r.cfg.TTL.String(), Status: consul.HealthPassing,
			DeregisterCriticalServiceAfter: r.cfg.DeregisterAfter.String(),
		},
	}, nil
}

// Register (re-)registers the worker, its check passing.
func (r *Registrar) Register(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	reg, err := r.registration()
	if err != nil {
		return err
	}
	if err := r.agent.ServiceRegisterOpts(reg, consul.ServiceRegisterOpts{}.WithContext(ctx)); err != nil {
		return fmt.Errorf("consul: register %s: %w", r.cfg.WorkerID, err)
	}
	return nil
}

// SetDraining re-registers the worker with draining set (or cleared):
// control planes place nothing new on a draining worker.
func (r *Registrar) SetDraining(ctx context.Context, on bool) error {
	r.mu.Lock()
	r.drains = on
	r.mu.Unlock()
	return r.Register(ctx)
}

// Deregister takes the worker out of the catalog.
func (r *Registrar) Deregister(ctx context.Context) error {
	if err := r.agent.ServiceDeregisterOpts(r.cfg.WorkerID, (&consul.QueryOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("consul: deregister %s: %w", r.cfg.WorkerID, err)
	}
	return nil
}

// Run passes the TTL check every TTL/3 while the probe succeeds (failing it
// with the probe's error otherwise) until ctx ends. A lost registration
// (the agent restarted) is made again.
func (r *Registrar) Run(ctx context.Context) {
	t := time.NewTicker(r.cfg.TTL / 3)
	defer t.Stop()
	for {
		r.update(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (r *Registrar) update(ctx context.Context) {
	status, output := consul.HealthPassing, "ok"
	if r.probe != nil {
		pctx, cancel := context.WithTimeout(ctx, r.cfg.TTL/3)
		err := r.probe(pctx)
		cancel()
		if err != nil {
			status, output = consul.HealthCritical, err.Error()
		}
	}
	err := r.agent.UpdateTTLOpts(r.CheckID(), output, status, (&consul.QueryOptions{}).WithContext(ctx))
	if err == nil || ctx.Err() != nil {
		return
	}
	var se consul.StatusError
	if errors.As(err, &se) && se.Code == 404 {
		r.log.Warn("consul lost the worker's registration; registering again")
		if rerr := r.Register(ctx); rerr != nil {
			r.log.Warn("consul registration", "err", rerr)
		}
		return
	}
	r.log.Warn("consul check update", "err", err)
}
