package consulreg

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
	"github.com/opensandbox/opensandbox/services/shared/consultest"
)

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Contract test against the fake Consul agent API: register with meta and a
// passing TTL check, keep it passing while the probe succeeds, fail it with
// the probe's error, go critical when the worker stops updating it, say
// draining, register again when the agent forgot, deregister.
func TestConsulContractRegistrarLifecycle(t *testing.T) {
	fake := consultest.New(t, "eu")
	fake.Token = "worker-token"
	cfg := consul.DefaultConfig()
	cfg.Address, cfg.Token = fake.Addr("eu"), fake.Token
	client, err := consul.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var probeErr error
	probe := func(context.Context) error { return probeErr }
	r, err := New(slog.New(slog.NewTextHandler(io.Discard, nil)), client, Config{
		WorkerID: "w1", Region: "eu", HTTPURL: "http://10.0.0.5:8081", GRPCAddr: "10.0.0.5:9090", Capacity: 50, Version: "v1",
		TTL: 300 * time.Millisecond,
	}, probe)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := r.Register(ctx); err != nil {
		t.Fatal(err)
	}
	reg := fake.Services("eu")["w1"]
	want := map[string]string{MetaRegion: "eu", MetaHTTPURL: "http://10.0.0.5:8081", MetaGRPCAddr: "10.0.0.5:9090", MetaCapacity: "50", MetaVersion: "v1", MetaDraining: "false"}
	for k, v := range want {
		if reg.Meta[k] != v {
			t.Fatalf("meta %s = %q, want %q (%+v)", k, reg.Meta[k], v, reg.Meta)
		}
	}
	if reg.Name != Service || reg.Address != "10.0.0.5" || reg.Port != 8081 || reg.Check == nil || reg.Check.TTL != "300ms" || reg.Check.DeregisterCriticalServiceAfter == "" {
		t.Fatalf("registration %+v check %+v", reg, reg.Check)
	}

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); r.Run(runCtx) }()
	time.Sleep(time.Second) // three TTLs: the updates keep it passing
	if s := fake.Status("eu", "w1"); s != consultest.Passing {
		t.Fatalf("status while running: %s", s)
	}
	probeErr = errors.New("podman unreachable")
	eventually(t, "probe failure reported", func() bool { return fake.Status("eu", "w1") == consultest.Critical })
	probeErr = nil
	eventually(t, "passing again", func() bool { return fake.Status("eu", "w1") == consultest.Passing })

	if err := r.SetDraining(ctx, true); err != nil {
		t.Fatal(err)
	}
	if fake.Services("eu")["w1"].Meta[MetaDraining] != "true" {
		t.Fatal("draining not registered")
	}
	// The agent lost the service (restarted without state): the next update
	// registers it again.
	fake.Remove("eu", "w1")
	eventually(t, "registered again", func() bool { return fake.Status("eu", "w1") == consultest.Passing })
	if fake.Services("eu")["w1"].Meta[MetaDraining] != "true" {
		t.Fatal("re-registration lost the draining flag")
	}

	stop()
	<-done
	eventually(t, "TTL expired after the worker stopped", func() bool { return fake.Status("eu", "w1") == consultest.Critical })
	if err := r.Deregister(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := fake.Services("eu")["w1"]; ok {
		t.Fatal("still registered")
	}

	// Without the ACL token the agent refuses.
	cfg.Token = ""
	anon, _ := consul.NewClient(cfg)
	r2, _ := New(slog.New(slog.NewTextHandler(io.Discard, nil)), anon, Config{WorkerID: "w2", Region: "eu", HTTPURL: "http://h:1", GRPCAddr: "h:2", Capacity: 1}, nil)
	if err := r2.Register(ctx); err == nil {
		t.Fatal("registered without a token")
	}
}
