package sandbox_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
// free local port and returns its host:port.
func startRegistry(t *testing.T) string {
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
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sandboxtest.Eventually(t, 10*time.Second, "registry listening", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return addr
}

func podmanCLI(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("podman", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// A template that names an image reference is pulled from its registry on
// first use (once), then runs like any template.
func TestTemplateImageIsPulled(t *testing.T) {
	p := newPullFixture(t, nil)
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

	// An unreachable registry answers 400, not 500.
	_, err := m.Create(ctx, api.SandboxConfig{TemplateID: "127.0.0.1:1/osb/none:latest"}, sandbox.CreateOptions{})
	var e *errs.Error
	if !errors.As(err, &e) || e.Kind != errs.KindInvalid || e.Code != "template_not_found" {
		t.Fatalf("unreachable registry: %v", err)
	}
	if n := pulls(t, promReg, "error"); n != 1 {
		t.Fatalf("failed pulls counted %v, want 1", n)
	}
}

// pullFixture is a manager whose template ref is an image in a real local
// registry (busybox pushed there under a fresh tag), not yet local.
type pullFixture struct {
	ref     string
	rt      *runtime.Podman
	cfg     sandbox.Config
	m       *sandbox.Manager
	metrics *prometheus.Registry
}

func newPullFixture(t *testing.T, mutate func(*sandbox.Config)) pullFixture {
	reg := startRegistry(t)
	p := pullFixture{ref: reg + "/osb/busybox:pulltest-" + sandboxtest.RandomID(), rt: sandboxtest.Runtime(t),
		cfg: sandboxtest.Config(t), metrics: prometheus.NewRegistry()}
	podmanCLI(t, "push", "--quiet", "--tls-verify=false", "localhost/opensandbox/busybox:latest", p.ref)
	t.Cleanup(func() { exec.Command("podman", "rmi", "--force", p.ref).Run() })
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

// With an allowlist, other registries are refused before any pull.
func TestPullRegistryAllowlist(t *testing.T) {
	rt := sandboxtest.Runtime(t)
	cfg := sandboxtest.Config(t)
	cfg.PullRegistries = []string{"registry.example.com"}
	m := sandboxtest.Manager(t, rt, cfg)
	_, err := m.Create(context.Background(), api.SandboxConfig{TemplateID: "127.0.0.1:1/osb/none:latest"}, sandbox.CreateOptions{})
	var e *errs.Error
	if !errors.As(err, &e) || e.Kind != errs.KindInvalid || !strings.Contains(e.Message, "not allowed") {
		t.Fatalf("want a refusal naming the allowlist, got %v", err)
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
