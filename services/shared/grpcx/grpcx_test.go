package grpcx

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/errs"
	"github.com/opensandbox/opensandbox/services/shared/proto/workerv1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

func TestStatusRoundTrip(t *testing.T) {
	for _, e := range []*errs.Error{
		errs.ErrSandboxNotFound,
		errs.Invalid("bad timeout"),
		errs.Unavailable("worker_full", "worker is at capacity"),
		errs.New(errs.KindQuota, "quota_exceeded", "concurrent sandbox limit reached"),
		errs.New(errs.KindTimeout, "canceled", "request canceled"),
		errs.New(errs.KindRange, "range_not_satisfiable", "range not satisfiable"),
		errs.New(errs.KindNoSpace, "no_space", "no space left on device"),
		errs.New(errs.KindTooLarge, "body_too_large", "too large"),
	} {
		back := errs.As(FromStatus(ToStatus(e.WithCause(errors.New("secret detail")))))
		if back.Kind != e.Kind || back.Code != e.Code || back.Message != e.Message {
			t.Errorf("%v came back as %+v", e, back)
		}
	}
	st, _ := status.FromError(ToStatus(errors.New("disk on fire")))
	if st.Code() != codes.Internal || st.Message() != "internal error" {
		t.Errorf("plain error: %v", st)
	}
	if errs.As(FromStatus(errors.New("dial tcp: refused"))).Code != "worker_unreachable" {
		t.Error("transport error not mapped to worker_unreachable")
	}
}

type fakeWorker struct {
	workerv1.UnimplementedSandboxWorkerServer
}

func (fakeWorker) GetSandbox(ctx context.Context, r *workerv1.GetSandboxRequest) (*workerv1.Sandbox, error) {
	if r.SandboxId == "ok" {
		return &workerv1.Sandbox{SandboxId: "ok"}, nil
	}
	return nil, errs.ErrSandboxNotFound
}

func TestSecretAuthOverRealGRPC(t *testing.T) {
	reg := prometheus.NewRegistry()
	var refused atomic.Int32
	sm := NewMetrics(reg, "server")
	srv := grpc.NewServer(ServerOptions(NewSecretAuth("cluster-secret-0123", func(string) { refused.Add(1) }), sm)...)
	workerv1.RegisterSandboxWorkerServer(srv, fakeWorker{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Stop()

	call := func(secret, id string) error {
		cc, err := NewClient(ln.Addr().String(), DialOptions{Secret: secret, Metrics: NewMetrics(prometheus.NewRegistry(), "client")})
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = workerv1.NewSandboxWorkerClient(cc).GetSandbox(ctx, &workerv1.GetSandboxRequest{SandboxId: id})
		return err
	}
	if err := call("cluster-secret-0123", "ok"); err != nil {
		t.Fatalf("authenticated call: %v", err)
	}
	if err := call("cluster-secret-0123", "missing"); !errors.Is(FromStatus(err), errs.ErrSandboxNotFound) {
		t.Fatalf("not found: %v", err)
	}
	for _, secret := range []string{"", "wrong-secret"} {
		if err := call(secret, "ok"); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("secret %q: %v, want Unauthenticated", secret, err)
		}
	}
	// A client without any credentials at all.
	cc, _ := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := workerv1.NewSandboxWorkerClient(cc).GetSandbox(ctx, &workerv1.GetSandboxRequest{SandboxId: "ok"}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no credentials: %v", err)
	}
	if refused.Load() != 3 {
		t.Fatalf("refused %d calls, want 3", refused.Load())
	}
	if n := testutil.ToFloat64(sm.Requests.WithLabelValues("/opensandbox.worker.v1.SandboxWorker/GetSandbox", "Unauthenticated")); n != 3 {
		t.Fatalf("metrics counted %v unauthenticated calls", n)
	}
}
