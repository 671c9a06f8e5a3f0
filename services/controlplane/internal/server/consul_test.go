package server

import (
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/sessions"
	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/shared/consultest"
	"github.com/opensandbox/opensandbox/services/worker/app"
	"github.com/opensandbox/opensandbox/services/worker/sandboxtest"
)

func consulClient(t *testing.T, addr string) *consulapi.Client {
	t.Helper()
	cfg := consulapi.DefaultConfig()
	cfg.Address = addr
	cl, err := consulapi.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// startConsulCluster is a server-mode control plane whose registry is the
// fake Consul (datacenters eu and us, the control plane's agent in eu).
func startConsulCluster(t *testing.T, mutate func(*Config)) (*testCluster, *consultest.Server) {
	t.Helper()
	fake := consultest.New(t, "eu", "us")
	c := startCluster(t, func(cfg *Config) {
		cfg.Registry = app.RegistryConsul
		cfg.Consul = consulClient(t, fake.Addr("eu"))
		if mutate != nil {
			mutate(cfg)
		}
	})
	return c, fake
}

// startConsulWorker runs a real worker process registered with dc's agent;
// the function returned kills it.
func startConsulWorker(t *testing.T, c *testCluster, fake *consultest.Server, dc string, capacity int) (string, func()) {
	t.Helper()
	id := "consul-" + dc + "-" + sandboxtest.RandomID()
	cmd := startWorkerProcess(t, c, workerBinary(t), id, killedWorkerDir(t, id), freePort(t), freePort(t),
		"OPENSANDBOX_REGION="+dc, "OPENSANDBOX_REGISTRY=consul", "CONSUL_HTTP_ADDR="+fake.Addr(dc),
		"OPENSANDBOX_CONSUL_TTL=1s", "OPENSANDBOX_CAPACITY="+strconv.Itoa(capacity))
	c.waitWorker(t, id, true)
	return id, func() { cmd.Process.Signal(syscall.SIGKILL); cmd.Wait() }
}

// Real worker processes register with the fake Consul; the control plane
// places in the worker's datacenter; a killed worker's check goes critical
// (its TTL is no longer passed) and it leaves placement, its sessions error.
func TestConsulRegistryRealWorkerKilledLeavesPlacement(t *testing.T) {
	c, fake := startConsulCluster(t, nil)
	id, kill := startConsulWorker(t, c, fake, "eu", 10)
	var sb api.Sandbox
	c.cp.json(t, "POST", "/sandboxes", api.SandboxConfig{TemplateID: "busybox", Region: "eu"}, 201, &sb)
	if sb.WorkerID != id || sb.Region != "eu" {
		t.Fatalf("placed on %s in %s", sb.WorkerID, sb.Region)
	}
	kill()
	killed := time.Now()
	pollUntil(t, 10*time.Second, "check critical", func() bool { return fake.Status("eu", id) == consultest.Critical })
	critical := time.Now()
	c.waitWorker(t, id, false)
	t.Logf("SIGKILL -> check critical %s (TTL 1s); critical -> out of placement (seen on GET /workers) %s",
		critical.Sub(killed).Round(time.Millisecond), time.Since(critical).Round(time.Millisecond))
	var rows []sessions.Row
	c.cp.json(t, "GET", "/sessions?status=error", nil, 200, &rows)
	if len(rows) != 1 || rows[0].SandboxID != sb.SandboxID || !strings.Contains(rows[0].ErrorMsg, "Consul") {
		t.Fatalf("error sessions %+v", rows)
	}
}

// Placement across regions with real workers found through Consul: a create
// for eu goes to eu; when eu is full the next one falls back to us (the
// answer says so); with strictRegion it gets 503 no_capacity instead.
func TestConsulRegionFallbackAndStrictRegion(t *testing.T) {
	c, fake := startConsulCluster(t, func(cfg *Config) { cfg.RegionFallback = []string{"eu", "us"} })
	eu, _ := startConsulWorker(t, c, fake, "eu", 1)
	us, _ := startConsulWorker(t, c, fake, "us", 10)

	var first, second api.Sandbox
	c.cp.json(t, "POST", "/sandboxes", api.SandboxConfig{TemplateID: "busybox"}, 201, &first) // no region: eu, the default
	if first.WorkerID != eu || first.Region != "eu" {
		t.Fatalf("first on %s in %s", first.WorkerID, first.Region)
	}
	resp, body := c.cp.do(t, "POST", "/sandboxes", strings.NewReader(`{"templateID":"busybox","region":"eu","strictRegion":true}`), "Content-Type", "application/json")
	wantError(t, resp, body, 503, "no_capacity")
	c.cp.json(t, "POST", "/sandboxes", api.SandboxConfig{TemplateID: "busybox", Region: "eu"}, 201, &second)
	if second.WorkerID != us || second.Region != "us" {
		t.Fatalf("fallback placed on %s in %s", second.WorkerID, second.Region)
	}
	if n := counter(t, c.reg, "opensandbox_placement_fallbacks_total", map[string]string{"from": "eu", "to": "us"}); n != 1 {
		t.Fatalf("fallbacks counted %v", n)
	}
	var got api.Sandbox
	c.cp.json(t, "GET", "/sandboxes/"+second.SandboxID, nil, 200, &got)
	if got.Region != "us" {
		t.Fatalf("GET says region %q", got.Region)
	}
	for _, sb := range []api.Sandbox{first, second} {
		c.cp.json(t, "DELETE", "/sandboxes/"+sb.SandboxID, nil, 204, nil)
	}
}
