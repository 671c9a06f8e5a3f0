package sandbox

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/shared/errs"
	"github.com/opensandbox/opensandbox/services/worker/internal/agentclient"
	"github.com/opensandbox/opensandbox/services/worker/internal/sandboxdb"
	"github.com/opensandbox/opensandbox/services/worker/runtime"
)

// Container labels; the worker label scopes restore to this worker's sandboxes.
const (
	LabelID       = "opensandbox.id"
	LabelTemplate = "opensandbox.template"
	LabelCreated  = "opensandbox.created"
	LabelTimeout  = "opensandbox.timeout"
	LabelWorker   = "opensandbox.worker"
)

// capabilities a normal shell user needs (package managers, chown, kill,
// binding low ports); every other one is dropped.
var sandboxCaps = []string{"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "NET_BIND_SERVICE"}

// Manager owns the sandboxes of one worker.
type Manager struct {
	log     *slog.Logger
	rt      runtime.Runtime
	cfg     Config
	metrics *Metrics
	images  *puller
	pulled  *pulledImages // for image garbage collection
	// imageMu: creates hold it shared from the image check to the
	// container's start; image GC holds it alone while it removes one.
	imageMu sync.RWMutex
	lock    *os.File // flock on the data directory, held while open
	seccomp string   // path of the sandboxes' seccomp profile

	mu         sync.Mutex
	boxes      map[string]*box
	creating   int                 // creates in flight, counted against capacity
	pending    map[string]struct{} // ids of creates and destroys in flight, whose container may exist
	restored   atomic.Bool         // Restore has run: containers unknown by now are orphans
	closed     bool                // set by Close; no destroy starts after it
	destroying sync.WaitGroup      // destroys in flight; Close waits for them
	unremoved  map[string]struct{} // containers whose removal failed; the reconciler retries

	// ctx is cancelled by Close; timers use it to destroy sandboxes.
	ctx        context.Context
	cancel     context.CancelFunc
	reconciler sync.WaitGroup // the reconcile loop; Close waits for it

	conns atomic.Int64 // long-lived connections open on the worker (Config.MaxStreams)
}

// box is one live sandbox.
type box struct {
	info  api.Sandbox // EndAt guarded by Manager.mu
	orgID string
	dir   string
	agent *agentclient.Client
	timer *time.Timer
	execs chan struct{} // a slot per plain command running (Config.MaxExecs)
	conns atomic.Int64  // long-lived connections open (Config.MaxSandboxStreams)

	dbMu   sync.RWMutex // writers hold RLock; destroy takes Lock to close
	db     *sandboxdb.DB
	closed bool

	// ctx ends when the sandbox is destroyed or the manager closes; every
	// stream, terminal and watch of the sandbox runs under it.
	ctx    context.Context
	cancel context.CancelFunc

	ptyMu sync.Mutex
	ptys  map[string]time.Time // terminal sessions whose end is not recorded yet -> start

	// work counts commands between their start and their row in the
	// command log: a destroy waits for them (briefly) before it closes the
	// database, so that a command answered just before a kill is logged.
	workMu   sync.Mutex
	draining bool
	work     sync.WaitGroup
}

// beginWork registers a command that will log a row; false once the
// sandbox is being destroyed.
func (b *box) beginWork() bool {
	b.workMu.Lock()
	defer b.workMu.Unlock()
	if b.draining {
		return false
	}
	b.work.Add(1)
	return true
}

// drainWork stops new commands and waits up to grace for those running to
// log their rows; it reports whether they all did.
func (b *box) drainWork(grace time.Duration) bool {
	b.workMu.Lock()
	b.draining = true
	b.workMu.Unlock()
	done := make(chan struct{})
	go func() { b.work.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(grace):
		return false
	}
}

// newBox returns a box whose context is a child of the manager's.
func (m *Manager) newBox(info api.Sandbox, orgID, dir string) *box {
	b := &box{info: info, orgID: orgID, dir: dir, ptys: map[string]time.Time{}, execs: make(chan struct{}, m.cfg.MaxExecs)}
	b.ctx, b.cancel = context.WithCancel(m.ctx)
	return b
}

func (m *Manager) openConnByID(ctx context.Context, id string) (context.Context, context.CancelFunc, error) {
	b, err := m.get(id)
	if err != nil {
		return nil, nil, err
	}
	return m.openConn(ctx, b)
}

// openConn takes a slot for a long-lived connection to a sandbox's agent
// (a stream, terminal or watch) and returns a context that ends with ctx or
// with the sandbox; its cancel frees the slot. Without a slot free on the
// sandbox or the worker it answers 429 too_many_connections.
func (m *Manager) openConn(ctx context.Context, b *box) (context.Context, context.CancelFunc, error) {
	if m.conns.Add(1) > int64(m.cfg.MaxStreams) {
		m.conns.Add(-1)
		m.metrics.ConnRefusals.WithLabelValues("worker").Inc()
		return nil, nil, errs.New(errs.KindQuota, "too_many_connections",
			"this worker has %d streams, terminals and watches open; close one or try later", m.cfg.MaxStreams)
	}
	if b.conns.Add(1) > int64(m.cfg.MaxSandboxStreams) {
		b.conns.Add(-1)
		m.conns.Add(-1)
		m.metrics.ConnRefusals.WithLabelValues("sandbox").Inc()
		return nil, nil, errs.New(errs.KindQuota, "too_many_connections",
			"this sandbox has %d streams, terminals and watches open; close one first", m.cfg.MaxSandboxStreams)
	}
	c, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(b.ctx, cancel)
	return c, sync.OnceFunc(func() {
		stop()
		cancel()
		b.conns.Add(-1)
		m.conns.Add(-1)
	}), nil
}

// CreateOptions carries who asks for a sandbox.
type CreateOptions struct {
	OrgID string
}

// New returns a manager; call Restore to pick up sandboxes from a previous run.
func New(log *slog.Logger, rt runtime.Runtime, cfg Config, metrics *Metrics) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	cfg.DataDir = abs
	if _, err := os.Stat(cfg.AgentBinary); err != nil {
		return nil, fmt.Errorf("agent binary: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(cfg.DataDir, "sandboxes"), 0o700); err != nil {
		return nil, err
	}
	lock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	// The Podman service reads the profile from this path at every create.
	seccomp := filepath.Join(cfg.DataDir, "seccomp.json")
	if err := os.WriteFile(seccomp, runtime.SeccompProfile, 0o644); err != nil {
		lock.Close()
		return nil, fmt.Errorf("write seccomp profile: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{log: log, rt: rt, cfg: cfg, metrics: metrics, boxes: map[string]*box{}, unremoved: map[string]struct{}{}, pending: map[string]struct{}{},
		ctx: ctx, cancel: cancel, lock: lock, seccomp: seccomp}
	m.pulled = loadPulledImages(cfg.DataDir)
	m.images = newPuller(log, rt, cfg, metrics, m.pulled)
	for _, w := range runtime.HostLimitWarnings(cfg.Capacity) {
		log.Warn("host limit too low for this worker's capacity", "detail", w)
	}
	m.reconciler.Add(1)
	go m.reconcileLoop()
	return m, nil
}

// Config returns the manager's configuration.
func (m *Manager) Config() Config { return m.cfg }

// Close stops the timers and the reconciler and closes the databases.
// Sandboxes keep running; the next Restore finds them again.
func (m *Manager) Close() {
	m.cancel()
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.destroying.Wait()
	m.reconciler.Wait()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, b := range m.boxes {
		b.timer.Stop()
		b.cancel()
		b.agent.Close()
		b.dbMu.Lock()
		b.closed = true
		b.db.Close()
		b.dbMu.Unlock()
	}
	m.boxes = map[string]*box{}
	m.lock.Close() // releases the data directory for the next manager
}

// lockDataDir takes an exclusive lock on the data directory: two managers on
// one directory would each restore, time out and remove the other's sandboxes.
func lockDataDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "worker.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("data directory %s is in use by another worker or server (%w)", dir, err)
	}
	return f, nil
}

// Count returns the number of live sandboxes.
func (m *Manager) Count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.boxes)
}

func (m *Manager) get(id string) (*box, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.boxes[id]
	if !ok {
		return nil, errs.ErrSandboxNotFound
	}
	return b, nil
}

// Get describes one sandbox.
func (m *Manager) Get(ctx context.Context, id string) (api.Sandbox, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.boxes[id]
	if !ok {
		return api.Sandbox{}, errs.ErrSandboxNotFound
	}
	return b.info, nil
}

// OrgOf returns the org that owns a sandbox ("" when created without one).
func (m *Manager) OrgOf(id string) (string, error) {
	b, err := m.get(id)
	if err != nil {
		return "", err
	}
	return b.orgID, nil
}

// List returns the live sandboxes, oldest first; orgID "" lists all.
func (m *Manager) List(ctx context.Context, orgID string) []api.Sandbox {
	m.mu.Lock()
	out := make([]api.Sandbox, 0, len(m.boxes))
	for _, b := range m.boxes {
		if orgID == "" || b.orgID == orgID {
			out = append(out, b.info)
		}
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].StartedAt.Before(out[j].StartedAt) })
	return out
}
