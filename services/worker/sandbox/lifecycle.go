package sandbox

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/agentapi"
	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/shared/errs"
	"github.com/opensandbox/opensandbox/services/shared/events"
	"github.com/opensandbox/opensandbox/services/worker/internal/agentclient"
	"github.com/opensandbox/opensandbox/services/worker/internal/sandboxdb"
	"github.com/opensandbox/opensandbox/services/worker/runtime"
)

// Create starts a sandbox and waits until its agent answers.
func (m *Manager) Create(ctx context.Context, cfg api.SandboxConfig, opts CreateOptions) (api.Sandbox, error) {
	start := time.Now()
	sb, err := m.create(ctx, cfg, opts)
	if err != nil {
		m.metrics.CreateErrors.WithLabelValues(errs.As(err).Code).Inc()
		return api.Sandbox{}, err
	}
	m.metrics.CreateDuration.WithLabelValues(sb.TemplateID).Observe(time.Since(start).Seconds())
	m.log.Info("sandbox created", "sandbox_id", sb.SandboxID, "template", sb.TemplateID, "disk_mb", sb.DiskMB, "org_id", opts.OrgID, "duration_ms", time.Since(start).Milliseconds())
	return sb, nil
}

func (m *Manager) create(ctx context.Context, cfg api.SandboxConfig, opts CreateOptions) (api.Sandbox, error) {
	r, err := m.validate(cfg)
	if err != nil {
		return api.Sandbox{}, err
	}
	m.mu.Lock()
	if len(m.boxes)+m.creating >= m.cfg.Capacity {
		m.mu.Unlock()
		return api.Sandbox{}, errs.Unavailable("worker_full", "worker is at capacity (%d sandboxes)", m.cfg.Capacity)
	}
	m.creating++
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.creating--
		m.mu.Unlock()
	}()

	id := newID()
	m.mu.Lock()
	m.pending[id] = struct{}{}
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.pending, id)
		m.mu.Unlock()
	}()
	now := time.Now().UTC()
	b := m.newBox(api.Sandbox{
		SandboxID:      id,
		TemplateID:     r.template,
		Alias:          cfg.Alias,
		Status:         api.StatusRunning,
		StartedAt:      now,
		EndAt:          now.Add(r.timeout),
		Metadata:       cfg.Metadata,
		CPUCount:       r.cpus,
		MemoryMB:       r.memMB,
		DiskMB:         r.diskMB,
		NetworkEnabled: cfg.NetworkEnabled,
		WorkerID:       m.cfg.WorkerID,
		Region:         m.cfg.Region,
	}, opts.OrgID, filepath.Join(m.cfg.DataDir, "sandboxes", id))
	if err := m.checkDiskSpace(int64(r.diskMB) << 20); err != nil {
		return api.Sandbox{}, err
	}
	runDir := filepath.Join(b.dir, "run")
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		return api.Sandbox{}, errs.Internal("create sandbox directory", err)
	}
	// Undo everything on any failure below: no leaked container, no stray dir.
	ok := false
	defer func() {
		if ok {
			return
		}
		b.cancel()
		if b.db != nil {
			b.db.Close()
		}
		m.removeContainer(context.WithoutCancel(ctx), containerName(id))
		m.removeDir(b.dir)
	}()

	if b.db, err = sandboxdb.Open(filepath.Join(b.dir, "sandbox.db")); err != nil {
		return api.Sandbox{}, errs.Internal("open sandbox database", err)
	}
	if err := m.saveState(ctx, b); err != nil {
		return api.Sandbox{}, errs.Internal("save sandbox state", err)
	}

	spec := runtime.Spec{
		Name:  containerName(id),
		Image: r.image,
		Cmd:   []string{agentapi.BinaryPath},
		Env:   cfg.Envs,
		Labels: map[string]string{
			LabelID:       id,
			LabelTemplate: r.template,
			LabelCreated:  now.Format(time.RFC3339),
			LabelTimeout:  strconv.Itoa(int(r.timeout.Seconds())),
			LabelWorker:   m.cfg.WorkerID,
		},
		Mounts: []runtime.Mount{
			{Source: m.cfg.AgentBinary, Destination: agentapi.BinaryPath, ReadOnly: true},
			{Source: runDir, Destination: agentapi.SocketDir, TmpfsBytes: runDirBytes},
		},
		CPUs:           float64(r.cpus),
		MemoryBytes:    int64(r.memMB) << 20,
		PidsLimit:      m.cfg.PidsLimit,
		Network:        cfg.NetworkEnabled,
		CapAdd:         sandboxCaps,
		SeccompProfile: m.seccomp,
		DiskBytes:      int64(r.diskMB) << 20,
		StateDir:       b.dir,
	}
	m.imageMu.RLock()
	ctr, err := m.start(ctx, spec, r, opts.OrgID)
	m.imageMu.RUnlock()
	if err != nil && errs.As(err).Kind != errs.KindInternal {
		return api.Sandbox{}, err // a refused or failed pull
	}
	if errors.Is(err, runtime.ErrNotFound) {
		return api.Sandbox{}, errs.New(errs.KindInvalid, "template_not_found", "image %s of template %q is not available on this worker", r.image, r.template)
	}
	if errors.Is(err, runtime.ErrUnavailable) {
		return api.Sandbox{}, errs.Unavailable("runtime_unavailable", "the container runtime is not reachable right now; try again").WithCause(err)
	}
	if errors.Is(err, runtime.ErrFirewall) {
		return api.Sandbox{}, errs.Unavailable("egress_firewall_unavailable", "networked sandboxes are refused: this worker cannot verify its egress firewall").WithCause(err)
	}
	if err != nil {
		return api.Sandbox{}, errs.Internal("start sandbox", err)
	}
	b.agent = agentclient.New(filepath.Join(runDir, agentapi.SocketName))
	// The sandbox's user namespace gets its limits while its agent starts;
	// no command of the tenant runs before both are done.
	limited := make(chan error, 1)
	go func() { limited <- runtime.LimitUserNS(ctx, ctr.PID) }()
	err = m.waitAgent(ctx, b.agent)
	if lerr := <-limited; err == nil && lerr != nil {
		err = errs.Internal("limit the sandbox's user namespace", lerr)
	}
	if err != nil {
		b.agent.Close()
		return api.Sandbox{}, err
	}
	m.addEvent(ctx, b, events.Event{Type: events.TypeCreated, Sandbox: &events.SandboxData{
		Template: r.template, CPUCount: r.cpus, MemoryMB: r.memMB, TimeoutS: int(r.timeout.Seconds()),
		Metadata: cfg.Metadata, StartedAt: now,
	}})

	m.mu.Lock()
	m.boxes[id] = b
	m.schedule(b)
	info := b.info
	m.mu.Unlock()
	m.metrics.Active.Inc()
	m.metrics.DiskLimitBytes.Add(float64(int64(r.diskMB) << 20))
	ok = true
	return info, nil
}

// runDirBytes bounds the tmpfs of a sandbox's run directory, which holds
// only the agent's socket.
const runDirBytes = 1 << 20

// checkDiskSpace refuses a sandbox whose whole disk limit the data
// directory's file system could not hold now: disks are sparse files, so
// limits are overcommitted like memory, but a create never starts on a
// nearly full host.
func (m *Manager) checkDiskSpace(need int64) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(m.cfg.DataDir, &st); err != nil {
		return errs.Internal("check free disk space", err)
	}
	if free := int64(st.Bavail) * st.Bsize; free < need {
		m.log.Warn("refusing a sandbox: data directory is nearly full", "free_bytes", free, "disk_limit_bytes", need)
		return errs.Unavailable("worker_disk_full", "worker has %d MiB of disk left, less than the sandbox's %d MiB limit", free>>20, need>>20)
	}
	return nil
}

func containerName(id string) string { return "osb-" + id }

// start starts a sandbox's container. A template that names an image
// reference runs from the local image only when org may use it (built in,
// public, or pulled by org); otherwise, or when it is not here, it is
// pulled for org first, with the registry and size checks. Images of named
// templates are never pulled.
func (m *Manager) start(ctx context.Context, spec runtime.Spec, r resolved, org string) (runtime.Container, error) {
	pullable := r.pullable && !m.images.builtin[r.image]
	if pullable && !m.images.visible(r.image, org) {
		if err := m.images.pull(ctx, r.image, org); err != nil {
			return runtime.Container{}, err
		}
	}
	ctr, err := m.rt.Start(ctx, spec)
	if errors.Is(err, runtime.ErrNotFound) && pullable {
		if err := m.images.pull(ctx, r.image, org); err != nil {
			return runtime.Container{}, err
		}
		ctr, err = m.rt.Start(ctx, spec)
	}
	if err == nil && pullable {
		m.pulled.used(r.image, time.Now())
	}
	return ctr, err
}

// waitAgent polls the agent until it answers; it starts within milliseconds.
func (m *Manager) waitAgent(ctx context.Context, c *agentclient.Client) error {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.AgentReadyTimeout)
	defer cancel()
	delay := time.Millisecond
	for {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		_, err := c.Health(pctx)
		pcancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return errs.Unavailable("agent_not_ready", "sandbox agent did not start within %s", m.cfg.AgentReadyTimeout).WithCause(err)
		case <-time.After(delay):
		}
		if delay < 20*time.Millisecond {
			delay *= 2
		}
	}
}

// state is what a sandbox's database keeps so a restart can restore it.
type state struct {
	Info  api.Sandbox `json:"info"`
	OrgID string      `json:"orgID,omitempty"`
}

func (m *Manager) saveState(ctx context.Context, b *box) error {
	return b.db.SetMeta(ctx, "state", state{Info: b.info, OrgID: b.orgID})
}

// schedule arms (or re-arms) the end-of-life timer; m.mu must be held.
func (m *Manager) schedule(b *box) {
	d := time.Until(b.info.EndAt)
	if b.timer != nil {
		b.timer.Reset(d)
		return
	}
	id := b.info.SandboxID
	b.timer = time.AfterFunc(d, func() { m.expire(id) })
}

// expire destroys a sandbox whose end has come. The timer may fire while
// SetTimeout holds m.mu to move the end (and re-arm the timer); the end is
// checked again under m.mu, so a sandbox whose end moved is left alone.
func (m *Manager) expire(id string) {
	if m.ctx.Err() != nil {
		return
	}
	ctx, cancel := context.WithTimeout(m.ctx, time.Minute)
	defer cancel()
	due := func(b *box) bool { return !time.Now().Before(b.info.EndAt) }
	if err := m.destroyIf(ctx, id, events.TypeTimeout, "", due); err != nil && !errors.Is(err, errs.ErrSandboxNotFound) {
		m.log.Error("destroy at timeout", "sandbox_id", id, "err", err)
	}
}

// SetTimeout moves a sandbox's end time to now + d.
func (m *Manager) SetTimeout(ctx context.Context, id string, d time.Duration) (api.Sandbox, error) {
	if d <= 0 {
		return api.Sandbox{}, errs.Invalid("timeout must be positive")
	}
	if d > m.cfg.MaxTimeout {
		return api.Sandbox{}, errs.Invalid("timeout %ds is over the maximum of %ds", int(d.Seconds()), int(m.cfg.MaxTimeout.Seconds()))
	}
	m.mu.Lock()
	b, ok := m.boxes[id]
	if !ok {
		m.mu.Unlock()
		return api.Sandbox{}, errs.ErrSandboxNotFound
	}
	b.info.EndAt = time.Now().UTC().Add(d)
	m.schedule(b)
	info := b.info
	m.mu.Unlock()

	b.dbMu.RLock()
	defer b.dbMu.RUnlock()
	if b.closed {
		return api.Sandbox{}, errs.ErrSandboxNotFound
	}
	if err := b.db.SetMeta(ctx, "state", state{Info: info, OrgID: b.orgID}); err != nil {
		return api.Sandbox{}, errs.Internal("save sandbox end time", err)
	}
	return info, nil
}

// destroyDrain bounds how long a destroy waits for commands to log.
const destroyDrain = 5 * time.Second

// Kill destroys a sandbox.
func (m *Manager) Kill(ctx context.Context, id string) error {
	return m.destroy(ctx, id, events.TypeKilled, "")
}

// destroy removes a sandbox; reason is the event type recorded (killed,
// timeout or error). The sandbox leaves the map first, so concurrent calls see
// it gone and exactly one of them does the work.
func (m *Manager) destroy(ctx context.Context, id, reason, detail string) error {
	return m.destroyIf(ctx, id, reason, detail, nil)
}

// destroyIf is destroy for a sandbox that cond (checked under m.mu, nil for
// always) still holds for; otherwise it does nothing and returns nil.
func (m *Manager) destroyIf(ctx context.Context, id, reason, detail string, cond func(*box) bool) error {
	m.mu.Lock()
	b, ok := m.boxes[id]
	if ok && cond != nil && !cond(b) {
		m.mu.Unlock()
		return nil
	}
	if ok && !m.closed {
		delete(m.boxes, id)
		// Its container goes below; until then it is no orphan.
		m.pending[id] = struct{}{}
		b.timer.Stop()
		m.destroying.Add(1)
	}
	closed := m.closed
	m.mu.Unlock()
	if !ok || closed {
		return errs.ErrSandboxNotFound
	}
	defer func() {
		m.mu.Lock()
		delete(m.pending, id)
		m.mu.Unlock()
		m.destroying.Done()
	}()
	m.metrics.Active.Dec()
	m.metrics.DiskLimitBytes.Sub(float64(int64(b.info.DiskMB) << 20))
	m.metrics.Destroyed.WithLabelValues(reason).Inc()
	// The agent is still up (unless its container died): ask it how the
	// open terminals stand, so their rows end with real byte counts.
	m.endPTYs(ctx, b)
	b.cancel()
	b.agent.Close()
	// The sandbox is out of the map either way; a failed removal is
	// retried by the reconciler.
	m.removeContainer(ctx, containerName(id))
	// Commands that ended as the sandbox went (their agent is gone now, so
	// the rest fail at once) log their rows before the database closes.
	if !b.drainWork(destroyDrain) {
		m.log.Warn("destroy: commands still logging after the grace; their rows are lost", "sandbox_id", id)
	}
	m.finish(ctx, b, reason, detail)
	m.log.Info("sandbox destroyed", "sandbox_id", id, "reason", reason)
	return nil
}

// finish records the final event and releases the sandbox's directory.
func (m *Manager) finish(ctx context.Context, b *box, reason, detail string) {
	m.addEvent(ctx, b, events.Event{Type: reason, Error: detail})
	b.dbMu.Lock()
	b.closed = true
	b.db.Close()
	b.dbMu.Unlock()
	m.release(b.dir)
	if m.cfg.OnDestroy != nil {
		m.cfg.OnDestroy(ctx, b.info.SandboxID, reason)
	}
}

// release removes a destroyed sandbox's directory, or, when events are
// retained, only its socket directory plus a marker for the publisher.
func (m *Manager) release(dir string) {
	if !m.cfg.RetainEvents {
		m.removeDir(dir)
		return
	}
	err := m.unmount(dir)
	for _, name := range []string{"run", "disk", "disk.img"} {
		if err != nil {
			break // not through a mount that stayed
		}
		if rerr := os.RemoveAll(filepath.Join(dir, name)); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}
	if werr := os.WriteFile(filepath.Join(dir, sandboxdb.RetiredMarker), nil, 0o600); werr != nil {
		err = errors.Join(err, werr)
	}
	if err != nil {
		m.log.Error("release sandbox directory", "dir", dir, "err", err)
	}
}

// removeDir removes a sandbox's directory, its disk and run directory
// unmounted first (the runtime's container must be gone). While anything
// is still mounted there the directory stays: removing through a mount
// would delete what it shows.
func (m *Manager) removeDir(dir string) {
	err := m.unmount(dir)
	if err == nil {
		err = os.RemoveAll(dir)
	}
	if err != nil {
		m.log.Error("remove sandbox directory", "dir", dir, "err", err)
	}
}

// unmount detaches what the runtime mounted in a sandbox's directory.
func (m *Manager) unmount(dir string) error {
	return runtime.Unmount(dir)
}
