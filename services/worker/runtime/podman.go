package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/containers/podman/v5/libpod/define"
	"github.com/containers/podman/v5/pkg/bindings"
	"github.com/containers/podman/v5/pkg/bindings/containers"
	"github.com/containers/podman/v5/pkg/bindings/images"
	"github.com/containers/podman/v5/pkg/bindings/system"
	"github.com/containers/podman/v5/pkg/errorhandling"
	"github.com/containers/podman/v5/pkg/specgen"
	spec "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/prometheus/client_golang/prometheus"
	nettypes "go.podman.io/common/libnetwork/types"
	storagetypes "go.podman.io/storage/types"
)

var (
	_ Runtime        = (*Podman)(nil)
	_ FirewallKeeper = (*Podman)(nil)
)

// Podman talks to a `podman system service` socket through the v5 bindings.
type Podman struct {
	conn       context.Context // the bindings keep their connection in a context
	ociRuntime string
	egress     EgressPolicy
	log        *slog.Logger
	fwMetrics  *FirewallMetrics

	netMu sync.Mutex
	netOK bool      // the sandbox network exists
	fw    *firewall // its firewall (nil until the network exists, or when disabled)

	diskMu sync.Mutex
	disk   diskMode // how disk limits are enforced; 0 until first needed
}

// NewPodman connects to uri (e.g. unix:///run/opensandbox/podman.sock).
// ociRuntime selects the OCI runtime per container ("" = the service's default).
func NewPodman(ctx context.Context, uri, ociRuntime string) (*Podman, error) {
	// The bindings keep this context for every later call, so it must not
	// carry the caller's cancellation; each call adds its own (see with).
	egress, err := EgressFromEnv()
	if err != nil {
		return nil, err
	}
	conn, err := bindings.NewConnection(context.WithoutCancel(ctx), uri)
	if err != nil {
		return nil, fmt.Errorf("connect to podman at %s: %w", uri, err)
	}
	return &Podman{conn: conn, ociRuntime: ociRuntime, egress: egress,
		log: quietLogger(), fwMetrics: NewFirewallMetrics(prometheus.NewRegistry())}, nil
}

// Instrument sets the logger and the firewall metrics; call it before use.
func (p *Podman) Instrument(log *slog.Logger, m *FirewallMetrics) {
	p.netMu.Lock()
	defer p.netMu.Unlock()
	p.log, p.fwMetrics = log, m
}

// SetEgress replaces the egress policy of networked sandboxes started from
// now on.
func (p *Podman) SetEgress(pol EgressPolicy) error {
	if err := pol.Validate(); err != nil {
		return err
	}
	p.netMu.Lock()
	defer p.netMu.Unlock()
	p.egress, p.netOK, p.fw = pol, false, nil
	return nil
}

// KeepFirewall makes sure the sandbox network exists and that its firewall
// is installed and intact, repairing it if not. It runs before every
// networked create and on every reconciler tick.
func (p *Podman) KeepFirewall(ctx context.Context) error {
	_, err := p.sandboxNetwork(ctx)
	return err
}

// sandboxNetwork returns the network of networked sandboxes once its
// firewall is verified; a failure fails the create rather than run
// unfiltered.
func (p *Podman) sandboxNetwork(ctx context.Context) (string, error) {
	p.netMu.Lock()
	defer p.netMu.Unlock()
	if !p.netOK {
		bridge, err := p.ensureNetwork(ctx, p.egress)
		if err != nil {
			p.fwMetrics.Verified.Set(0)
			return "", fmt.Errorf("sandbox network: %w", err)
		}
		if p.egress.Disabled {
			p.fwMetrics.Verified.Set(0)
			p.log.Warn("egress firewall is off (OPENSANDBOX_EGRESS_FIREWALL=off): networked sandboxes reach private addresses", "network", p.egress.Network)
			if _, err := exec.LookPath("nft"); err == nil {
				// Tables an earlier run installed would still filter.
				if err := removeTables(ctx, p.egress); err != nil {
					p.log.Warn("remove the egress firewall of an earlier run", "err", err)
				}
			}
		} else {
			p.fw = newFirewall(p.egress, bridge, p.log, p.fwMetrics)
		}
		p.netOK = true
	}
	if p.fw != nil {
		if err := p.fw.keep(ctx); err != nil {
			return "", err
		}
	}
	return p.egress.Network, nil
}

// with carries the caller's deadline and cancellation into a bindings call.
func (p *Podman) with(ctx context.Context) (context.Context, context.CancelFunc) {
	c, cancel := context.WithCancel(p.conn)
	stop := context.AfterFunc(ctx, cancel)
	return c, func() { stop(); cancel() }
}

// BindingsContext returns a context for calling the Podman bindings directly
// (benchmarks compare against raw Podman with it); call cancel when done.
func (p *Podman) BindingsContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return p.with(ctx)
}

func (p *Podman) Start(ctx context.Context, s Spec) (Container, error) {
	c, cancel := p.with(ctx)
	defer cancel()

	g := specgen.NewSpecGenerator(s.Image, false)
	g.Name = s.Name
	// The entrypoint, not the command: an image's own ENTRYPOINT (tini, a
	// tool) would otherwise run first and our agent would not be PID 1.
	g.Entrypoint = s.Cmd
	g.Command = []string{}
	g.Env = s.Env
	g.Labels = s.Labels
	g.Hostname = "sandbox"
	g.OCIRuntime = p.ociRuntime
	for _, m := range s.Mounts {
		opts := []string{"rbind", "rw", "nosuid", "nodev", "noexec"}
		if m.ReadOnly {
			opts = []string{"rbind", "ro", "nosuid", "nodev"} // the agent binary must stay executable
		}
		g.Mounts = append(g.Mounts, spec.Mount{Type: "bind", Source: m.Source, Destination: m.Destination, Options: opts})
	}
	g.CapDrop = []string{"all"}
	g.CapAdd = s.CapAdd
	noNewPrivs := true
	g.NoNewPrivileges = &noNewPrivs
	g.ResourceLimits = resources(s)
	if s.Network {
		name, err := p.sandboxNetwork(ctx)
		if err != nil {
			return Container{}, err
		}
		g.NetNS = specgen.Namespace{NSMode: specgen.Bridge}
		g.Networks = map[string]nettypes.PerNetworkOptions{name: {}}
		// The firewall is IPv4; no IPv6 means no way around it.
		g.Sysctl = map[string]string{"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"}
	} else {
		g.NetNS = specgen.Namespace{NSMode: specgen.NoNetwork}
	}
	stop := uint(1)
	g.StopTimeout = &stop
	// A user namespace of its own: root in the sandbox is an unprivileged
	// host uid from a range Podman picks (the `containers` entries of
	// /etc/subuid and /etc/subgid), so per-user kernel limits and any file
	// it may reach on the host are not host root's.
	g.UserNS = specgen.Namespace{NSMode: specgen.Auto, Value: "size=" + strconv.Itoa(UserNSSize)}
	g.IDMappings = &storagetypes.IDMappingOptions{AutoUserNs: true, AutoUserNsOpts: storagetypes.AutoUserNsOptions{Size: UserNSSize}}
	g.SeccompProfilePath = s.SeccompProfile
	var disk diskMode
	if s.DiskBytes > 0 {
		var err error
		if disk, err = p.diskMode(ctx); err != nil {
			return Container{}, err
		}
		if disk == diskStorageOpt {
			g.StorageOpts = map[string]string{"size": strconv.FormatInt(s.DiskBytes, 10)}
		}
	}

	// The sandbox's disk is made while Podman creates the container. On
	// any error, the caller removes the container by name and unmounts
	// what is left in StateDir.
	var made chan diskResult
	if disk == diskLoop {
		made = make(chan diskResult, 1)
		go func() {
			mnt, err := makeDisk(c, s.StateDir, s.DiskBytes)
			made <- diskResult{mnt, err}
		}()
	}
	resp, err := containers.CreateWithSpec(c, g, nil)
	var d diskResult
	if made != nil {
		d = <-made
		if err != nil {
			// No container: the disk goes too (a missing image is pulled
			// and the create tried again).
			if rerr := removeDisk(s.StateDir); rerr != nil {
				return Container{}, fmt.Errorf("create container: %w (and %v)", unavailable(err), rerr)
			}
		} else if d.err != nil {
			return Container{}, fmt.Errorf("sandbox disk: %w", d.err)
		}
	}
	if err != nil {
		if isNotFound(err) {
			return Container{}, fmt.Errorf("image %s: %w", s.Image, ErrNotFound)
		}
		return Container{}, fmt.Errorf("create container: %w", unavailable(err))
	}
	if err := p.prepare(c, resp.ID, s, d.mnt); err != nil {
		return Container{}, err
	}
	if err := containers.Start(c, resp.ID, nil); err != nil {
		// The caller also remembers it for the reconciler when removing
		// it fails too.
		return Container{}, fmt.Errorf("start container: %w", unavailable(err))
	}
	return p.Inspect(ctx, resp.ID)
}

// diskMode finds, once, how this Podman service can bound a sandbox's disk.
func (p *Podman) diskMode(ctx context.Context) (diskMode, error) {
	p.diskMu.Lock()
	defer p.diskMu.Unlock()
	if p.disk != 0 {
		return p.disk, nil
	}
	c, cancel := p.with(ctx)
	defer cancel()
	info, err := system.Info(c, nil)
	if err != nil {
		return 0, fmt.Errorf("podman info: %w", err)
	}
	if info.Store == nil {
		return 0, errors.New("podman info: no storage information")
	}
	st := info.Store
	mode, err := diskModeFor(st.GraphDriverName, st.GraphStatus["Backing Filesystem"], fmt.Sprint(st.GraphOptions["overlay.skip_mount_home"]) == "true")
	if err != nil {
		return 0, err
	}
	p.disk = mode
	return mode, nil
}

// diskResult is a sandbox disk made for a container: where it is mounted.
type diskResult struct {
	mnt string
	err error
}

// prepare readies what the created container needs on the host before it
// starts: its tmpfs directories, owned by the sandbox's root (known only
// now that Podman picked its id range), and the disk mounted at disk, if
// any, bound over its writable layer.
func (p *Podman) prepare(c context.Context, id string, s Spec, disk string) error {
	data, err := containers.Inspect(c, id, nil)
	if err != nil {
		return fmt.Errorf("inspect created container: %w", err)
	}
	uid, gid, err := rootIDs(data.HostConfig)
	if err != nil {
		return err
	}
	for _, m := range s.Mounts {
		if m.TmpfsBytes > 0 {
			if err := mountTmpfs(m.Source, m.TmpfsBytes, uid, gid); err != nil {
				return err
			}
		}
	}
	if disk == "" {
		return nil
	}
	layer := layerDir(data)
	if layer == "" {
		return errors.New("the created container has no overlay layer directory")
	}
	return bindLayer(disk, layer)
}

// layerDir is the directory of a container's writable overlay layer (its
// upper and work directories), "" when there is none.
func layerDir(data *define.InspectContainerData) string {
	if data.GraphDriver == nil || data.GraphDriver.Name != "overlay" || data.GraphDriver.Data["UpperDir"] == "" {
		return ""
	}
	return filepath.Dir(data.GraphDriver.Data["UpperDir"])
}

func resources(s Spec) *spec.LinuxResources {
	r := &spec.LinuxResources{}
	if s.MemoryBytes > 0 {
		mem := s.MemoryBytes
		r.Memory = &spec.LinuxMemory{Limit: &mem, Swap: &mem} // no swap beyond the limit
	}
	if s.CPUs > 0 {
		period := uint64(100_000)
		quota := int64(s.CPUs * float64(period))
		r.CPU = &spec.LinuxCPU{Period: &period, Quota: &quota}
	}
	if s.PidsLimit > 0 {
		r.Pids = &spec.LinuxPids{Limit: s.PidsLimit}
	}
	return r
}

func (p *Podman) Remove(ctx context.Context, name string) error {
	c, cancel := p.with(ctx)
	defer cancel()
	// A layer on a sandbox disk of its own: stop first, so that the overlay
	// is unmounted, then take the disk away, so that Podman deletes only the
	// layer's skeleton and not the sandbox's files one by one.
	if data, err := containers.Inspect(c, name, nil); err == nil {
		if layer := layerDir(data); layer != "" && isMountPoint(layer) {
			zero := uint(0)
			if err := containers.Stop(c, name, &containers.StopOptions{Timeout: &zero}); err != nil && !isNotFound(err) && !isNotRunning(err) {
				return fmt.Errorf("stop container %s: %w", name, err)
			}
			if err := unbindLayer(layer); err != nil {
				return fmt.Errorf("detach the disk of container %s: %w", name, err)
			}
		}
	}
	force, volumes, timeout := true, true, uint(0)
	_, err := containers.Remove(c, name, &containers.RemoveOptions{Force: &force, Volumes: &volumes, Timeout: &timeout})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("remove container %s: %w", name, err)
	}
	return nil
}

func (p *Podman) Inspect(ctx context.Context, name string) (Container, error) {
	c, cancel := p.with(ctx)
	defer cancel()
	data, err := containers.Inspect(c, name, nil)
	if err != nil {
		if isNotFound(err) {
			return Container{}, fmt.Errorf("container %s: %w", name, ErrNotFound)
		}
		return Container{}, fmt.Errorf("inspect container %s: %w", name, err)
	}
	ctr := Container{ID: data.ID, Name: data.Name, Created: data.Created}
	if data.Config != nil {
		ctr.Labels = data.Config.Labels
	}
	if data.State != nil {
		ctr.Running = data.State.Running
		ctr.PID = data.State.Pid
	}
	return ctr, nil
}

func (p *Podman) List(ctx context.Context, labels map[string]string) ([]Container, error) {
	c, cancel := p.with(ctx)
	defer cancel()
	var filter []string
	for k, v := range labels {
		filter = append(filter, k+"="+v)
	}
	all := true
	list, err := containers.List(c, &containers.ListOptions{All: &all, Filters: map[string][]string{"label": filter}})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := make([]Container, 0, len(list))
	for _, l := range list {
		name := ""
		if len(l.Names) > 0 {
			name = l.Names[0]
		}
		out = append(out, Container{ID: l.ID, Name: name, Labels: l.Labels, Running: l.State == "running", PID: l.Pid, Created: l.Created})
	}
	return out, nil
}

func (p *Podman) ImageExists(ctx context.Context, ref string) (bool, error) {
	c, cancel := p.with(ctx)
	defer cancel()
	ok, err := images.Exists(c, ref, nil)
	if err != nil {
		return false, fmt.Errorf("look up image %s: %w", ref, err)
	}
	return ok, nil
}

func (p *Podman) RemoveImage(ctx context.Context, ref string) error {
	c, cancel := p.with(ctx)
	defer cancel()
	// Not forced: an image a container still uses stays.
	_, errList := images.Remove(c, []string{ref}, nil)
	for _, err := range errList {
		if err != nil && !isNotFound(err) {
			return fmt.Errorf("remove image %s: %w", ref, err)
		}
	}
	return nil
}

func (p *Podman) ImageSize(ctx context.Context, ref string) (int64, error) {
	c, cancel := p.with(ctx)
	defer cancel()
	img, err := images.GetImage(c, ref, nil)
	if err != nil {
		if isNotFound(err) {
			return 0, fmt.Errorf("image %s: %w", ref, ErrNotFound)
		}
		return 0, fmt.Errorf("inspect image %s: %w", ref, err)
	}
	return img.Size, nil
}

func (p *Podman) Pull(ctx context.Context, ref string, insecure bool, progress io.Writer) error {
	c, cancel := p.with(ctx)
	defer cancel()
	// Always from the registry, also when a copy is local: a pull is how an
	// org shows it may have the image (layers already here are not fetched
	// again).
	opts := new(images.PullOptions).WithPolicy("always").WithQuiet(false).WithProgressWriter(progress)
	if insecure {
		opts.WithSkipTLSVerify(true)
	}
	if _, err := images.Pull(c, ref, opts); err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	return nil
}

// isNotRunning: Podman answers 304 to stopping a stopped container.
func isNotRunning(err error) bool {
	var ee *errorhandling.ErrorModel
	return errors.As(err, &ee) && ee.ResponseCode == http.StatusNotModified
}

// isNotFound reports whether Podman answered that the object does not
// exist. Only an answer counts: while the service restarts, dialing its
// socket fails with "no such file or directory", which says nothing about
// the container (taking it for "gone" once leaked a running container).
func isNotFound(err error) bool {
	var ee *errorhandling.ErrorModel
	if !errors.As(err, &ee) {
		return false
	}
	if ee.ResponseCode == http.StatusNotFound {
		return true
	}
	msg := ee.Error()
	return strings.Contains(msg, "no such") || strings.Contains(msg, "image not known")
}

// unavailable marks a failure to reach the Podman service (rather than one
// of its answers) with ErrUnavailable.
func unavailable(err error) error {
	var ee *errorhandling.ErrorModel
	if errors.As(err, &ee) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}
