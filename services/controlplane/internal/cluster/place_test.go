package cluster

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opensandbox/opensandbox/services/controlplane/internal/placement"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/registry"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/workerclient"
	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/shared/errs"
	"github.com/opensandbox/opensandbox/services/shared/grpcx"
	"github.com/opensandbox/opensandbox/services/shared/proto/workerv1"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
)

// fakeWorker is a real gRPC server whose CreateSandbox counts calls and
// either answers or, having received the request, drops the connection.
type fakeWorker struct {
	workerv1.UnimplementedSandboxWorkerServer
	id    string
	die   bool
	calls atomic.Int32
	srv   *grpc.Server
}

func (f *fakeWorker) CreateSandbox(ctx context.Context, _ *workerv1.CreateSandboxRequest) (*workerv1.Sandbox, error) {
	f.calls.Add(1)
	if f.die {
		go f.srv.Stop() // the worker goes away with the request in hand
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return &workerv1.Sandbox{SandboxId: "sb-" + f.id, WorkerId: f.id, Status: api.StatusRunning}, nil
}

func startFake(t *testing.T, id string, die bool) (*fakeWorker, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeWorker{id: id, die: die, srv: grpc.NewServer()}
	workerv1.RegisterSandboxWorkerServer(f.srv, f)
	go f.srv.Serve(ln)
	t.Cleanup(f.srv.Stop)
	return f, ln.Addr().String()
}

// refusedAddr is an address nothing listens on.
func refusedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

type fakeRegistry struct{ workers []registry.Worker }

func (r *fakeRegistry) Region(string) []registry.Worker { return r.workers }
func (r *fakeRegistry) Get(string) (registry.Worker, bool) {
	return registry.Worker{}, false
}
func (r *fakeRegistry) List() []registry.Worker { return r.workers }
func (r *fakeRegistry) Placed(string)           {}
func (r *fakeRegistry) MarkFull(string)         {}

var _ Registry = (*fakeRegistry)(nil)

// placer returns an API whose placement always tries first, then second:
// with two candidates, best of three samples is the lower load.
func placer(t *testing.T, first, second string) *API {
	pool := workerclient.New(grpcx.DialOptions{Secret: "test-secret-0123456789-0123456789"})
	t.Cleanup(pool.Close)
	reg := &fakeRegistry{workers: []registry.Worker{
		{ID: "first", Region: "eu", GRPCAddr: first, Capacity: 10, Current: 0},
		{ID: "second", Region: "eu", GRPCAddr: second, Capacity: 10, Current: 9},
	}}
	return New(slog.New(slog.NewTextHandler(io.Discard, nil)), Config{DefaultRegion: "eu"}, nil, nil, reg, pool, nil,
		placement.New(placement.DefaultK, 1), NewMetrics(prometheus.NewRegistry()))
}

// A worker that cannot be reached is skipped for the next; one that failed
// after the request reached it is not (a retry could leave a sandbox on
// each).
func TestPlaceRetriesOnlyWhatWasNeverSent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	t.Run("refused", func(t *testing.T) {
		good, addr := startFake(t, "second", false)
		sb, w, err := placer(t, refusedAddr(t), addr).place(ctx, "eu", api.SandboxConfig{}, "")
		if err != nil || w.ID != "second" || sb.SandboxID != "sb-second" || good.calls.Load() != 1 {
			t.Fatalf("placed %+v on %s: %v (second called %d times)", sb, w.ID, err, good.calls.Load())
		}
	})

	t.Run("failed after the request arrived", func(t *testing.T) {
		dying, dyingAddr := startFake(t, "first", true)
		good, goodAddr := startFake(t, "second", false)
		_, _, err := placer(t, dyingAddr, goodAddr).place(ctx, "eu", api.SandboxConfig{}, "")
		if dying.calls.Load() != 1 {
			t.Fatalf("the first worker got %d requests", dying.calls.Load())
		}
		if e := errs.As(err); e.Code != "worker_failed" || e.Kind != errs.KindUnavailable {
			t.Fatalf("error %v (code %q), want worker_failed", err, e.Code)
		}
		if n := good.calls.Load(); n != 0 {
			t.Fatalf("retried on the second worker (%d calls): the first may hold the sandbox already", n)
		}
	})
}
