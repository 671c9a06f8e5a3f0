package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/opensandbox/opensandbox/services/controlplane/internal/placement"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/registry"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/server"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/store"
	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/shared/natsx"
	"github.com/opensandbox/opensandbox/services/shared/obs"
	"github.com/opensandbox/opensandbox/services/shared/pgtest"
	"github.com/opensandbox/opensandbox/services/shared/proto/workerv1"
	"github.com/opensandbox/opensandbox/services/worker/app"
	"github.com/opensandbox/opensandbox/services/worker/sandbox"
	"github.com/opensandbox/opensandbox/services/worker/sandboxtest"
	"github.com/prometheus/client_golang/prometheus"
)

const (
	benchJWTSecret    = "bench-jwt-secret-0123456789"
	benchWorkerSecret = "bench-worker-secret-0123456789"
)

// serverMode starts a server-mode control plane (real PostgreSQL, embedded
// NATS) with one in-process worker, and returns its URL and an API key.
func serverMode(b *testing.B) (url, key string, workerReg *prometheus.Registry) {
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	st, err := store.Open(ctx, pgtest.NewDatabase(b), true)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(st.Close)
	ns, err := natsx.StartEmbedded(natsx.EmbeddedOptions{Port: -1, StoreDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(ns.Shutdown)
	org, err := st.CreateOrg(ctx, store.Org{Name: "bench", Slug: "bench", MaxConcurrentSandboxes: 1000, MaxSandboxTimeoutSec: 3600})
	if err != nil {
		b.Fatal(err)
	}
	key = store.NewKey()
	if _, err := st.CreateAPIKey(ctx, store.APIKey{OrgID: org.ID, Prefix: store.VisiblePrefix(key), Scopes: []string{"sandboxes:write", "admin"}}, store.HashKey(key)); err != nil {
		b.Fatal(err)
	}

	cpConn, err := natsx.Connect(ns.ClientURL(), "bench-cp")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cpConn.Close)
	cfg := server.Config{Mode: server.ModeServer, JWTSecret: benchJWTSecret, WorkerSecret: benchWorkerSecret,
		DefaultRegion: "eu", StaleAfter: registry.DefaultStaleAfter, MaxUpload: 1 << 30, Sandbox: sandbox.DefaultConfig()}
	cp, err := server.StartServer(ctx, sandboxtest.Logger(b), obs.NewRegistry(), st, cpConn, cfg)
	if err != nil {
		b.Fatal(err)
	}
	cpLn := benchListen(b)
	go cp.Listener(cpLn)
	b.Cleanup(func() { cp.Shutdown() })

	rt := sandboxtest.Runtime(b)
	scfg := sandboxtest.Config(b)
	scfg.Region = "eu"
	mgr := sandboxtest.Manager(b, rt, scfg)
	wConn, err := natsx.Connect(ns.ClientURL(), "bench-worker")
	if err != nil {
		b.Fatal(err)
	}
	httpLn, grpcLn := benchListen(b), benchListen(b)
	workerReg = obs.NewRegistry()
	w, err := app.New(sandboxtest.Logger(b), workerReg, mgr, wConn, app.Config{
		HTTPURL: "http://" + httpLn.Addr().String(), GRPCAddr: grpcLn.Addr().String(),
		JWTSecret: benchJWTSecret, ClusterSecret: benchWorkerSecret, HeartbeatInterval: time.Second, MaxUpload: 1 << 30, Sandbox: scfg,
	})
	if err != nil {
		b.Fatal(err)
	}
	wctx, wcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Serve(wctx, httpLn, grpcLn) }()
	b.Cleanup(func() { wcancel(); <-done; wConn.Close() })

	url = "http://" + cpLn.Addr().String()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var ws []registry.Worker
		keyed(b, "GET", url+"/workers", key, nil, &ws)
		if len(ws) == 1 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("the worker did not join the control plane")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return url, key, workerReg
}

// workerCreateSeconds is the time the worker spent in CreateSandbox calls.
func workerCreateSeconds(b *testing.B, reg *prometheus.Registry) (float64, uint64) {
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "opensandbox_grpc_server_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "method" && l.GetValue() == "/opensandbox.worker.v1.SandboxWorker/CreateSandbox" {
					return m.GetHistogram().GetSampleSum(), m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return 0, 0
}

func benchListen(b *testing.B) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	return ln
}

// keyed sends a request with an API key and decodes a JSON answer.
func keyed(b *testing.B, method, url, key string, in, out any) {
	var body io.Reader
	if in != nil {
		buf, _ := json.Marshal(in)
		body = bytes.NewReader(buf)
	}
	req, _ := http.NewRequest(method, url, body)
	req.Header.Set("X-API-Key", key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		msg, _ := io.ReadAll(resp.Body)
		b.Fatalf("%s %s: %d %s", method, url, resp.StatusCode, msg)
	}
	if out != nil {
		json.NewDecoder(resp.Body).Decode(out)
	} else {
		io.Copy(io.Discard, resp.Body)
	}
}

// BenchmarkControlPlaneCreateOverhead: a create through the server-mode
// control plane (API key in PostgreSQL, quota reservation, placement, gRPC
// to the worker, session row, token) beside a combined-mode create, both on
// the same Podman in the same run, interleaved.
func BenchmarkControlPlaneCreateOverhead(b *testing.B) {
	const n, warm = 40, 2
	combinedURL, _ := combined(b)
	cpURL, key, workerReg := serverMode(b)
	var viaCP, local []time.Duration
	var cpTotal time.Duration
	var workerBefore float64
	for i := range n + warm {
		if i == warm {
			workerBefore, _ = workerCreateSeconds(b, workerReg)
		}
		var dl, dc time.Duration
		var id string
		var sb api.Sandbox
		viaLocal := func() { t0 := time.Now(); id = createSandbox(b, combinedURL); dl = time.Since(t0) }
		viaServer := func() {
			t0 := time.Now()
			keyed(b, "POST", cpURL+"/sandboxes", key, api.SandboxConfig{TemplateID: "busybox"}, &sb)
			dc = time.Since(t0)
		}
		if i%2 == 0 { // alternate the order so neither side always goes first
			viaLocal()
			viaServer()
		} else {
			viaServer()
			viaLocal()
		}
		if sb.Token == "" || sb.ConnectURL == "" {
			b.Fatalf("server-mode create without token: %+v", sb)
		}
		del(b, combinedURL+"/sandboxes/"+id)
		keyed(b, "DELETE", cpURL+"/sandboxes/"+sb.SandboxID, key, nil, nil)
		if i >= warm {
			local = append(local, dl)
			viaCP = append(viaCP, dc)
			cpTotal += dc
		}
	}
	workerAfter, _ := workerCreateSeconds(b, workerReg)
	// What the control plane adds: its request time minus the worker's time
	// in CreateSandbox (auth, quota, placement, gRPC hop, session, token).
	own := (cpTotal.Seconds() - (workerAfter - workerBefore)) / n * 1000
	b.ReportMetric(own, "cp-own-ms")
	addRow(b, row{name: "create via control plane (server)", ours: viaCP, baseline: local, baseName: "combined-mode create",
		note: fmt.Sprintf("control plane's own time %.1f ms/create (request minus the worker's CreateSandbox)", own)})
}

// BenchmarkPlacementDecisions: best-of-3 placement decisions per second over
// a registry holding 4 workers with fake load (heartbeats as from 4 hosts).
func BenchmarkPlacementDecisions(b *testing.B) {
	reg := registry.New(sandboxtest.Logger(b), registry.Config{}, nil)
	beat := func() { // 4 workers at 20%, 45%, 60% and 80% of capacity
		for i, current := range []int32{400, 900, 1200, 1600} {
			reg.Observe(&workerv1.Heartbeat{WorkerId: fmt.Sprintf("w%d", i), Region: "eu", GrpcAddr: "10.0.0.1:9090",
				HttpAddr: "http://10.0.0.1:8081", Capacity: 2000, Current: current})
		}
	}
	p := placement.New(placement.DefaultK, 1)
	const batch, batches = 1000, 200
	var per []time.Duration
	hits := map[string]int{}
	var busy time.Duration
	for range batches {
		beat() // fresh heartbeats: each batch starts from the same fake load
		t0 := time.Now()
		for range batch {
			w, ok := p.Pick(reg.Region("eu"), nil)
			if !ok {
				b.Fatal("no worker")
			}
			reg.Placed(w.ID)
			hits[w.ID]++
		}
		d := time.Since(t0)
		busy += d
		per = append(per, d)
	}
	rate := float64(batch*batches) / busy.Seconds()
	b.ReportMetric(rate, "decisions/s")
	addRow(b, row{name: "placement: 1000 decisions", ours: per,
		note: fmt.Sprintf("%.0f decisions/s, one core, 4 workers at 20/45/60/80%% load; placed %d/%d/%d/%d",
			rate, hits["w0"], hits["w1"], hits["w2"], hits["w3"])})
}
