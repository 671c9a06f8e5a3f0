package autoscaler

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"
)

// LocalConfig configures the local pool.
type LocalConfig struct {
	Binary  string   // opensandbox-worker
	Regions []string // regions it serves
	Dir     string   // each worker's data directory and log go under it
	Host    string   // listen and advertise address (127.0.0.1)
	// Env is every worker's environment (NATS, secrets, Podman...); the
	// pool adds the worker's id, region, ports and data directory.
	Env []string
	// StopTimeout bounds a worker's graceful stop before SIGKILL.
	StopTimeout time.Duration
}

// Local is a pool of worker processes on this machine, each with its own
// data directory and ports: for a laptop or one big host, and the pool the
// tests run for real.
type Local struct {
	log *slog.Logger
	cfg LocalConfig

	mu    sync.Mutex
	procs map[string]*localProc
}

type localProc struct {
	m    Machine
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

var _ Pool = (*Local)(nil)

// NewLocal returns a local pool.
func NewLocal(log *slog.Logger, cfg LocalConfig) (*Local, error) {
	if cfg.Binary == "" || cfg.Dir == "" || len(cfg.Regions) == 0 {
		return nil, fmt.Errorf("local pool: worker binary, directory and regions are required")
	}
	if _, err := os.Stat(cfg.Binary); err != nil {
		return nil, fmt.Errorf("local pool: worker binary: %w", err)
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 30 * time.Second
	}
	return &Local{log: log, cfg: cfg, procs: map[string]*localProc{}}, nil
}

// Name is "local".
func (l *Local) Name() string { return "local" }

// SupportedRegions are the configured regions.
func (l *Local) SupportedRegions() []string { return slices.Clone(l.cfg.Regions) }

// Machines lists the region's worker processes; one that exited on its own
// is dropped (its data directory stays for a look).
func (l *Local) Machines(_ context.Context, region string) ([]Machine, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Machine
	for id, p := range l.procs {
		select {
		case <-p.done:
			l.log.Warn("local pool: worker process exited", "worker_id", id, "state", p.cmd.ProcessState.String(), "log", p.log.Name())
			delete(l.procs, id)
			continue
		default:
		}
		if p.m.Region == region {
			out = append(out, p.m)
		}
	}
	slices.SortFunc(out, func(a, b Machine) int { return cmpString(a.ID, b.ID) })
	return out, nil
}

func freePort(host string) (string, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", err
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port, nil
}

// Launch starts a worker process.
func (l *Local) Launch(_ context.Context, region string) (Machine, error) {
	if !slices.Contains(l.cfg.Regions, region) {
		return Machine{}, fmt.Errorf("local pool: region %q is not served", region)
	}
	var b [4]byte
	rand.Read(b[:])
	id := "local-" + region + "-" + hex.EncodeToString(b[:])
	httpPort, err := freePort(l.cfg.Host)
	if err != nil {
		return Machine{}, err
	}
	grpcPort, err := freePort(l.cfg.Host)
	if err != nil {
		return Machine{}, err
	}
	dir := filepath.Join(l.cfg.Dir, id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Machine{}, err
	}
	logf, err := os.OpenFile(filepath.Join(l.cfg.Dir, id+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return Machine{}, err
	}
	cmd := exec.Command(l.cfg.Binary)
	cmd.Env = append(slices.Clone(l.cfg.Env),
		"OPENSANDBOX_WORKER_ID="+id, "OPENSANDBOX_REGION="+region, "OPENSANDBOX_DATA_DIR="+dir,
		"OPENSANDBOX_HOST="+l.cfg.Host, "OPENSANDBOX_PORT="+httpPort, "OPENSANDBOX_GRPC_PORT="+grpcPort)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return Machine{}, fmt.Errorf("local pool: start worker: %w", err)
	}
	p := &localProc{m: Machine{ID: id, Region: region, WorkerID: id, State: StateRunning}, dir: dir, cmd: cmd, done: make(chan struct{}), log: logf}
	go func() { cmd.Wait(); logf.Close(); close(p.done) }()
	l.mu.Lock()
	l.procs[id] = p
	l.mu.Unlock()
	l.log.Info("local pool: worker started", "worker_id", id, "region", region, "pid", cmd.Process.Pid, "http_port", httpPort, "grpc_port", grpcPort)
	return p.m, nil
}

// Drain does nothing at the pool level: the scaler drains the worker.
func (l *Local) Drain(context.Context, Machine) error { return nil }

// Terminate stops the worker process (SIGTERM, then SIGKILL after the stop
// timeout) and removes its data directory when it can.
func (l *Local) Terminate(ctx context.Context, m Machine) error {
	l.mu.Lock()
	p, ok := l.procs[m.ID]
	delete(l.procs, m.ID)
	l.mu.Unlock()
	if !ok {
		return nil
	}
	stopProc(ctx, p, l.cfg.StopTimeout)
	l.log.Info("local pool: worker stopped", "worker_id", m.ID)
	// The machine is gone either way; a directory that cannot go (a mount
	// left inside it) stays for a look.
	if err := os.RemoveAll(p.dir); err != nil {
		l.log.Warn("local pool: worker data directory left behind", "dir", p.dir, "err", err)
	}
	return nil
}

func stopProc(ctx context.Context, p *localProc, timeout time.Duration) {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.cmd.Process.Kill()
		<-p.done
	case <-ctx.Done():
		p.cmd.Process.Kill()
		<-p.done
	}
}

// Close stops every worker the pool started (the control plane shuts down).
func (l *Local) Close() {
	l.mu.Lock()
	procs := l.procs
	l.procs = map[string]*localProc{}
	l.mu.Unlock()
	for _, p := range procs {
		stopProc(context.Background(), p, l.cfg.StopTimeout)
	}
}
