package sandbox_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/shared/errs"
	"github.com/opensandbox/opensandbox/services/worker/runtime"
	"github.com/opensandbox/opensandbox/services/worker/sandbox"
	"github.com/opensandbox/opensandbox/services/worker/sandboxtest"
	"github.com/prometheus/client_golang/prometheus"
)

// startRegistry runs a real image registry (Debian's docker-registry) on a
// free local port and returns its host:port and a function that stops it.
func startRegistry(t *testing.T) (string, func()) {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		t.Fatal("docker-registry not installed (apt-get install docker-registry; .ci/run does)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	conf := filepath.Join(dir, "config.yml")
	os.WriteFile(conf, []byte(fmt.Sprintf("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n", dir, addr)), 0o600)
	cmd := exec.Command(bin, "serve", conf)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stop := sync.OnceFunc(func() { cmd.Process.Kill(); cmd.Wait() })
	t.Cleanup(stop)
	sandboxtest.Eventually(t, 10*time.Second, "registry listening", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return addr, stop
}

func podmanCLI(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("podman", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// A template that names an image reference is pulled from its registry on
// first use (once), then runs like any template; a registry that cannot be
// reached answers 404 image_not_found, not 500.
func TestTemplateImageIsPulled(t *testing.T) {
	p := newPullFixture(t, func(cfg *sandbox.Config) { cfg.PullRegistries = append(cfg.PullRegistries, "127.0.0.1:1") })
	ref, rt, m, promReg := p.ref, p.rt, p.m, p.metrics
	ctx := context.Background()
	if ok, _ := rt.ImageExists(ctx, ref); ok {
		t.Fatal("image is already local: the test would not pull")
	}
	for range 2 {
		sb, err := m.Create(ctx, api.SandboxConfig{TemplateID: ref}, sandbox.CreateOptions{})
		if err != nil {
			t.Fatalf("create from %s: %v", ref, err)
		}
		if res, err := m.Exec(ctx, sb.SandboxID, api.ProcessConfig{Cmd: "echo pulled"}); err != nil || res.Stdout != "pulled\n" {
			t.Fatalf("exec: %v %+v", err, res)
		}
	}
	if n := pulls(t, promReg, "ok"); n != 1 {
		t.Fatalf("pulled %v times, want once", n)
	}
	_, err := m.Create(ctx, api.SandboxConfig{TemplateID: "127.0.0.1:1/osb/none:latest"}, sandbox.CreateOptions{})
	wantErr(t, err, errs.KindNotFound, "image_not_found")
	if n := pulls(t, promReg, "error"); n != 1 {
		t.Fatalf("failed pulls counted %v, want 1", n)
	}
}

func wantErr(t *testing.T, err error, kind errs.Kind, code string) *errs.Error {
	t.Helper()
	var e *errs.Error
	if !errors.As(err, &e) || e.Kind != kind || e.Code != code {
		t.Fatalf("got %v, want %d %s", err, kind.HTTPStatus(), code)
	}
	return e
}

// pullFixture is a manager whose template ref is an image in a real local
// registry (busybox pushed there under a fresh tag), not yet local; the
// registry is on the allow-list (by its loopback address: named explicitly).
type pullFixture struct {
	ref          string
	registry     string
	stopRegistry func()
	rt           *runtime.Podman
	cfg          sandbox.Config
	m            *sandbox.Manager
	metrics      *prometheus.Registry
}

func newPullFixture(t *testing.T, mutate func(*sandbox.Config)) pullFixture {
	reg, stop := startRegistry(t)
	p := pullFixture{ref: reg + "/osb/busybox:pulltest-" + sandboxtest.RandomID(), registry: reg, stopRegistry: stop,
		rt: sandboxtest.Runtime(t), cfg: sandboxtest.Config(t), metrics: prometheus.NewRegistry()}
	podmanCLI(t, "push", "--quiet", "--tls-verify=false", "localhost/opensandbox/busybox:latest", p.ref)
	t.Cleanup(func() { exec.Command("podman", "rmi", "--force", p.ref).Run() })
	p.cfg.PullRegistries = []string{reg}
	p.cfg.InsecureRegistries = []string{reg}
	if mutate != nil {
		mutate(&p.cfg)
	}
	m, err := sandbox.New(sandboxtest.Logger(t), p.rt, p.cfg, sandbox.NewMetrics(p.metrics))
	if err != nil {
		t.Fatal(err)
	}
	p.m = m
	t.Cleanup(func() {
		for _, sb := range m.List(context.Background(), "") {
			m.Kill(context.Background(), sb.SandboxID)
		}
		m.Close()
		sandboxtest.ExpectNoContainers(t, p.rt, p.cfg.WorkerID)
	})
	return p
}

func pulls(t *testing.T, reg *prometheus.Registry, result string) float64 {
	return counter(t, reg, "opensandbox_image_pulls_total", "result", result)
}

func refusals(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	return counter(t, reg, "opensandbox_image_pull_refusals_total", "reason", reason)
}

// Pulls come only from registries on the allow-list: with none (the
// default) nothing is pulled, and a registry not on it is refused with 403
// registry_not_allowed before any connection to it; the listed one works
// (the control).
func TestPullRegistryAllowlist(t *testing.T) {
	reg, contacted := silentRegistry(t)
	for _, tc := range []struct {
		name, reason string
		list         []string
	}{
		{"no registries (the default)", "pulls_disabled", nil},
		{"another registry listed", "registry_not_allowed", []string{"registry.example.com"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt, cfg, promReg := sandboxtest.Runtime(t), sandboxtest.Config(t), prometheus.NewRegistry()
			cfg.PullRegistries = tc.list
			m, err := sandbox.New(sandboxtest.Logger(t), rt, cfg, sandbox.NewMetrics(promReg))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			_, err = m.Create(context.Background(), api.SandboxConfig{TemplateID: reg + "/osb/x:latest"}, sandbox.CreateOptions{OrgID: "a"})
			e := wantErr(t, err, errs.KindForbidden, "registry_not_allowed")
			if !strings.Contains(e.Message, "OPENSANDBOX_PULL_REGISTRIES") {
				t.Fatalf("the refusal does not say what to change: %q", e.Message)
			}
			if n := refusals(t, promReg, tc.reason); n != 1 {
				t.Fatalf("refusals with reason %s: %v", tc.reason, n)
			}
		})
	}
	select {
	case <-contacted:
		t.Fatal("a refused registry was contacted")
	default:
	}
	// Built-in templates need no registry.
	rt, cfg := sandboxtest.Runtime(t), sandboxtest.Config(t)
	m := sandboxtest.Manager(t, rt, cfg)
	if _, err := m.Create(context.Background(), api.SandboxConfig{TemplateID: "busybox"}, sandbox.CreateOptions{}); err != nil {
		t.Fatalf("built-in template without registries: %v", err)
	}
}

// With "*" a registry whose host resolves to a private, loopback or
// link-local address is refused (it could be the fleet's own services, or
// the metadata service); named explicitly it is allowed (the fixture's
// registry on 127.0.0.1); a host resolving to public addresses passes the
// check (and then fails here, where no internet is: 404, not 403).
func TestPullRefusesPrivateRegistryAddresses(t *testing.T) {
	p := newPullFixture(t, func(cfg *sandbox.Config) { cfg.PullRegistries = []string{sandbox.AnyPublicRegistry} })
	ctx := context.Background()
	p.m.SetImageLookup(func(_ context.Context, host string) ([]netip.Addr, error) {
		switch host {
		case "registry.internal.test":
			return []netip.Addr{netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("10.0.0.5")}, nil
		case "metadata.test":
			return []netip.Addr{netip.MustParseAddr("169.254.169.254")}, nil
		case "public.test":
			return []netip.Addr{netip.MustParseAddr("8.8.8.8")}, nil
		}
		return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	})
	for _, ref := range []string{p.ref, "registry.internal.test/x:1", "metadata.test/x:1", "[::1]:5000/x:1", "localhost/private:1"} {
		_, err := p.m.Create(ctx, api.SandboxConfig{TemplateID: ref}, sandbox.CreateOptions{OrgID: "a"})
		e := wantErr(t, err, errs.KindForbidden, "registry_not_allowed")
		if !strings.Contains(e.Message, "private") {
			t.Fatalf("%s: refusal %q does not name the reason", ref, e.Message)
		}
	}
	if n := refusals(t, p.metrics, "private_address"); n != 5 {
		t.Fatalf("private_address refusals %v, want 5", n)
	}
	if ok, _ := p.rt.ImageExists(ctx, p.ref); ok {
		t.Fatal("the refused image was pulled")
	}
	_, err := p.m.Create(ctx, api.SandboxConfig{TemplateID: "public.test/x:1"}, sandbox.CreateOptions{OrgID: "a"})
	wantErr(t, err, errs.KindNotFound, "image_not_found")

	// Named explicitly, the loopback registry is allowed.
	q := newPullFixture(t, func(cfg *sandbox.Config) { cfg.PullRegistries = append(cfg.PullRegistries, sandbox.AnyPublicRegistry) })
	if _, err := q.m.Create(ctx, api.SandboxConfig{TemplateID: q.ref}, sandbox.CreateOptions{OrgID: "a"}); err != nil {
		t.Fatalf("explicitly listed loopback registry: %v", err)
	}
}

// A pulled image belongs to the orgs that pulled it: another org does not
// start from the local copy but pulls it itself (and so must be allowed
// to, by this worker and by the registry); once the registry is gone, an
// org that never pulled it gets 404 while the owners keep using theirs.
func TestPulledImagesArePerOrg(t *testing.T) {
	p := newPullFixture(t, nil)
	ctx := context.Background()
	create := func(org string) error {
		_, err := p.m.Create(ctx, api.SandboxConfig{TemplateID: p.ref}, sandbox.CreateOptions{OrgID: org})
		return err
	}
	for _, org := range []string{"org-a", "org-a", "org-b"} {
		if err := create(org); err != nil {
			t.Fatalf("%s: %v", org, err)
		}
	}
	if n := pulls(t, p.metrics, "ok"); n != 2 {
		t.Fatalf("pulls %v: want one for org-a and one for org-b (org-b must not reuse org-a's copy)", n)
	}
	record, _ := os.ReadFile(filepath.Join(p.cfg.DataDir, "pulled-images.json"))
	if !strings.Contains(string(record), `"org-a"`) || !strings.Contains(string(record), `"org-b"`) {
		t.Fatalf("pulled-images.json does not record both owners: %s", record)
	}
	p.stopRegistry()
	wantErr(t, create("org-c"), errs.KindNotFound, "image_not_found")
	for _, org := range []string{"org-a", "org-b"} {
		if err := create(org); err != nil {
			t.Fatalf("owner %s after the registry went away: %v", org, err)
		}
	}
	// Made public by the operator, every org starts from the local copy.
	cfg := sandboxtest.Config(t)
	cfg.PublicImages = []string{p.ref}
	m := sandboxtest.Manager(t, p.rt, cfg)
	if _, err := m.Create(ctx, api.SandboxConfig{TemplateID: p.ref}, sandbox.CreateOptions{OrgID: "org-c"}); err != nil {
		t.Fatalf("public image, registry gone, no registries allowed: %v", err)
	}
}

// An image over OPENSANDBOX_PULL_MAX_BYTES is refused with 413: by the
// registry's manifest before anything is fetched, and by its local size
// after the pull (then removed).
func TestPullSizeCap(t *testing.T) {
	ctx := context.Background()
	p := newPullFixture(t, func(cfg *sandbox.Config) { cfg.PullMaxBytes = 1000 })
	_, err := p.m.Create(ctx, api.SandboxConfig{TemplateID: p.ref}, sandbox.CreateOptions{OrgID: "a"})
	wantErr(t, err, errs.KindTooLarge, "image_too_large")
	if n := pulls(t, p.metrics, "ok") + pulls(t, p.metrics, "error"); n != 0 {
		t.Fatalf("%v pulls of an image the manifest says is too large", n)
	}
	if ok, _ := p.rt.ImageExists(ctx, p.ref); ok {
		t.Fatal("the too-large image is local")
	}

	q := newPullFixture(t, func(cfg *sandbox.Config) { cfg.PullMaxBytes = 1000 })
	q.m.SetRegistrySize(func(context.Context, string, bool) (int64, error) { return 0, nil }) // a registry that understates
	_, err = q.m.Create(ctx, api.SandboxConfig{TemplateID: q.ref}, sandbox.CreateOptions{OrgID: "a"})
	wantErr(t, err, errs.KindTooLarge, "image_too_large")
	if n := pulls(t, q.metrics, "ok"); n != 1 {
		t.Fatalf("pulls %v, want the one measured after", n)
	}
	if ok, _ := q.rt.ImageExists(ctx, q.ref); ok {
		t.Fatal("the too-large image was kept after the pull")
	}
	if n := refusals(t, p.metrics, "too_large") + refusals(t, q.metrics, "too_large"); n != 2 {
		t.Fatalf("too_large refusals %v, want 2", n)
	}
	// Under the limit (the control): the same image runs.
	r := newPullFixture(t, nil)
	if _, err := r.m.Create(ctx, api.SandboxConfig{TemplateID: r.ref}, sandbox.CreateOptions{OrgID: "a"}); err != nil {
		t.Fatalf("under the default limit: %v", err)
	}
}

// silentRegistry accepts connections and never answers, so a pull from it
// hangs; the channel gets a value once the first connection arrived.
func silentRegistry(t *testing.T) (addr string, contacted <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan struct{}, 1)
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close() // the pull left behind fails now
		}
	})
	return ln.Addr().String(), ch
}

// A create waiting for a pull gives up when its context ends, also the
// create that started the pull.
func TestCreateWaitingForAPullCanBeCancelled(t *testing.T) {
	reg, contacted := silentRegistry(t)
	rt := sandboxtest.Runtime(t)
	cfg := sandboxtest.Config(t)
	cfg.PullRegistries = []string{reg}
	cfg.InsecureRegistries = []string{reg}
	cfg.PullTimeout = 15 * time.Second // the pull itself would hang
	m := sandboxtest.Manager(t, rt, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-contacted // the pull is under way
		cancel()
	}()
	start := time.Now()
	_, err := m.Create(ctx, api.SandboxConfig{TemplateID: reg + "/osb/silent:latest"}, sandbox.CreateOptions{})
	var e *errs.Error
	if !errors.As(err, &e) || e.Code != "canceled" || !errors.Is(err, context.Canceled) {
		t.Fatalf("want a cancelled create, got %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the cancelled create returned after %s", d)
	}
	if n := len(m.List(context.Background(), "")); n != 0 {
		t.Fatalf("%d sandboxes after a cancelled create", n)
	}
}

// A pulled image is removed once no sandbox has started from it for
// ImageGCAfter, never while a sandbox runs from it; built-in template
// images are never touched.
func TestUnusedPulledImagesAreCollected(t *testing.T) {
	p := newPullFixture(t, func(cfg *sandbox.Config) {
		cfg.ImageGCAfter = 2 * time.Second // the collector then looks every second
	})
	ref, rt, m, cfg, promReg := p.ref, p.rt, p.m, p.cfg, p.metrics
	ctx := context.Background()
	sb, err := m.Create(ctx, api.SandboxConfig{TemplateID: ref}, sandbox.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	record, _ := os.ReadFile(filepath.Join(cfg.DataDir, "pulled-images.json"))
	if !strings.Contains(string(record), ref) {
		t.Fatalf("pulled-images.json does not record %s: %s", ref, record)
	}
	// Well past ImageGCAfter, the image stays while the sandbox runs from it.
	time.Sleep(3 * time.Second)
	if removed := m.CollectImages(ctx); len(removed) != 0 {
		t.Fatalf("removed %v while a sandbox runs from it", removed)
	}
	if ok, _ := rt.ImageExists(ctx, ref); !ok {
		t.Fatal("the image of a running sandbox was removed")
	}
	if err := m.Kill(ctx, sb.SandboxID); err != nil {
		t.Fatal(err)
	}
	sandboxtest.Eventually(t, 15*time.Second, "unused image removed", func() bool {
		ok, _ := rt.ImageExists(ctx, ref)
		return !ok
	})
	if ok, _ := rt.ImageExists(ctx, "localhost/opensandbox/busybox:latest"); !ok {
		t.Fatal("the built-in busybox image was removed")
	}
	if n := counter(t, promReg, "opensandbox_images_removed_total"); n != 1 {
		t.Fatalf("removals counted %v, want 1", n)
	}
	record, _ = os.ReadFile(filepath.Join(cfg.DataDir, "pulled-images.json"))
	if strings.Contains(string(record), ref) {
		t.Fatalf("pulled-images.json still records the removed image: %s", record)
	}
	// Used again, it is pulled again.
	if _, err := m.Create(ctx, api.SandboxConfig{TemplateID: ref}, sandbox.CreateOptions{}); err != nil {
		t.Fatalf("create after the image was collected: %v", err)
	}
}

// counter is the value of a counter, of its series with the given label
// (name, value) pair if one is given.
func counter(t *testing.T, reg *prometheus.Registry, name string, label ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := len(label) < 2
			for _, l := range m.GetLabel() {
				match = match || (l.GetName() == label[0] && l.GetValue() == label[1])
			}
			if match {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
