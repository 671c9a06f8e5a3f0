package grpcserver

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/errs"
	"github.com/opensandbox/opensandbox/services/shared/grpcx"
	"github.com/opensandbox/opensandbox/services/shared/proto/workerv1"
	"github.com/opensandbox/opensandbox/services/worker/sandboxtest"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

const secret = "grpc-test-secret-0123456789"

// serve runs the SandboxWorker service over a real manager on 127.0.0.1:0
// and returns an authenticated client and the address.
func serve(t *testing.T) (workerv1.SandboxWorkerClient, string) {
	t.Helper()
	mgr := sandboxtest.Manager(t, sandboxtest.Runtime(t), sandboxtest.Config(t))
	srv := grpc.NewServer(grpcx.ServerOptions(grpcx.NewSecretAuth(secret, nil), grpcx.NewMetrics(prometheus.NewRegistry(), "server"))...)
	workerv1.RegisterSandboxWorkerServer(srv, New(mgr, nil))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	cc, err := grpcx.NewClient(ln.Addr().String(), grpcx.DialOptions{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return workerv1.NewSandboxWorkerClient(cc), ln.Addr().String()
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestUnaryRPCs(t *testing.T) {
	cl, addr := serve(t)
	ctx := ctxT(t, time.Minute)
	sb, err := cl.CreateSandbox(ctx, &workerv1.CreateSandboxRequest{OrgId: "org1",
		Config: &workerv1.SandboxConfig{Template: "busybox", TimeoutSeconds: 120, Metadata: map[string]string{"k": "v"}}})
	if err != nil {
		t.Fatal(err)
	}
	if sb.GetOrgId() != "org1" || sb.GetMetadata()["k"] != "v" || sb.GetEndAt().AsTime().Sub(sb.GetStartedAt().AsTime()) != 120*time.Second {
		t.Fatalf("created %v", sb)
	}
	id := sb.GetSandboxId()
	got, err := cl.GetSandbox(ctx, &workerv1.GetSandboxRequest{SandboxId: id})
	if err != nil || got.GetSandboxId() != id || got.GetOrgId() != "org1" {
		t.Fatalf("get %v %v", got, err)
	}
	for org, n := range map[string]int{"": 1, "org1": 1, "org2": 0} {
		l, err := cl.ListSandboxes(ctx, &workerv1.ListSandboxesRequest{OrgId: org})
		if err != nil || len(l.GetSandboxes()) != n {
			t.Fatalf("list %q: %v %v", org, l, err)
		}
	}
	upd, err := cl.SetTimeout(ctx, &workerv1.SetTimeoutRequest{SandboxId: id, TimeoutSeconds: 600})
	if err != nil || time.Until(upd.GetEndAt().AsTime()) < 590*time.Second {
		t.Fatalf("set timeout %v %v", upd, err)
	}
	stdin := []byte("from stdin")
	res, err := cl.ExecCommand(ctx, &workerv1.ExecCommandRequest{SandboxId: id, Cmd: "cat; echo; echo e >&2; exit 4", Stdin: stdin})
	if err != nil || string(res.GetStdout()) != "from stdin\n" || string(res.GetStderr()) != "e\n" || res.GetExitCode() != 4 {
		t.Fatalf("exec %v %v", res, err)
	}
	if _, err := cl.WriteFile(ctx, &workerv1.WriteFileRequest{SandboxId: id, Path: "/tmp/d/f.txt", Content: []byte("hello"), Mode: "0600"}); err != nil {
		t.Fatal(err)
	}
	rf, err := cl.ReadFile(ctx, &workerv1.ReadFileRequest{SandboxId: id, Path: "/tmp/d/f.txt"})
	if err != nil || string(rf.GetContent()) != "hello" {
		t.Fatalf("read %v %v", rf, err)
	}
	ls, err := cl.ListDir(ctx, &workerv1.ListDirRequest{SandboxId: id, Path: "/tmp/d"})
	if err != nil || len(ls.GetEntries()) != 1 || ls.GetEntries()[0].GetName() != "f.txt" || ls.GetEntries()[0].GetSize() != 5 || ls.GetEntries()[0].GetMode() != "0600" {
		t.Fatalf("list dir %v %v", ls, err)
	}
	_, err = cl.ReadFile(ctx, &workerv1.ReadFileRequest{SandboxId: id, Path: "/nope"})
	if status.Code(err) != codes.NotFound || !errors.Is(grpcx.FromStatus(err), errs.ErrFileNotFound) {
		t.Fatalf("missing file: %v", err)
	}
	_, err = cl.SetTimeout(ctx, &workerv1.SetTimeoutRequest{SandboxId: id})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("zero timeout: %v", err)
	}
	if _, err := cl.DestroySandbox(ctx, &workerv1.DestroySandboxRequest{SandboxId: id}); err != nil {
		t.Fatal(err)
	}
	_, err = cl.GetSandbox(ctx, &workerv1.GetSandboxRequest{SandboxId: id})
	if !errors.Is(grpcx.FromStatus(err), errs.ErrSandboxNotFound) {
		t.Fatalf("get after destroy: %v", err)
	}

	// No credentials, no service.
	cc, _ := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	defer cc.Close()
	_, err = workerv1.NewSandboxWorkerClient(cc).ListSandboxes(ctx, &workerv1.ListSandboxesRequest{})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("unauthenticated call: %v", err)
	}
	stream, err := workerv1.NewSandboxWorkerClient(cc).ExecCommandStream(ctx, &workerv1.ExecCommandRequest{SandboxId: id, Cmd: "true"})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("unauthenticated stream: %v", err)
	}
}

// ExecCommandStream delivers output while the command still runs.
func TestExecCommandStreamStreams(t *testing.T) {
	cl, _ := serve(t)
	ctx := ctxT(t, time.Minute)
	sb, err := cl.CreateSandbox(ctx, &workerv1.CreateSandboxRequest{Config: &workerv1.SandboxConfig{Template: "busybox"}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	stream, err := cl.ExecCommandStream(ctx, &workerv1.ExecCommandRequest{SandboxId: sb.GetSandboxId(),
		Cmd: "for i in 1 2 3 4; do echo line$i; sleep 0.4; done; echo bad >&2; exit 3"})
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr strings.Builder
	var firstOut time.Duration
	var started bool
	var exit *workerv1.ExecCommandEvent_Exited
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch e := ev.GetEvent().(type) {
		case *workerv1.ExecCommandEvent_Started_:
			started = e.Started.GetPid() > 0
		case *workerv1.ExecCommandEvent_Stdout:
			if firstOut == 0 {
				firstOut = time.Since(start)
			}
			stdout.Write(e.Stdout)
		case *workerv1.ExecCommandEvent_Stderr:
			stderr.Write(e.Stderr)
		case *workerv1.ExecCommandEvent_Exit:
			exit = e.Exit
		}
	}
	total := time.Since(start)
	if !started || exit == nil || exit.GetExitCode() != 3 || stdout.String() != "line1\nline2\nline3\nline4\n" || stderr.String() != "bad\n" {
		t.Fatalf("started=%v exit=%v stdout=%q stderr=%q", started, exit, stdout.String(), stderr.String())
	}
	// The first line came long before the end: it was streamed, not buffered.
	if total < 1500*time.Millisecond || firstOut > total-1000*time.Millisecond {
		t.Fatalf("first output after %s of %s: not streamed", firstOut, total)
	}
	t.Logf("first output after %s, exit after %s", firstOut.Round(time.Millisecond), total.Round(time.Millisecond))

	// Cancelling the call kills the command.
	cctx, cancel := context.WithCancel(ctx)
	stream, err = cl.ExecCommandStream(cctx, &workerv1.ExecCommandRequest{SandboxId: sb.GetSandboxId(), Cmd: "echo go; sleep 30; touch /tmp/survived"})
	if err != nil {
		t.Fatal(err)
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if ev.GetStdout() != nil {
			break
		}
	}
	cancel()
	res, err := cl.ExecCommand(ctx, &workerv1.ExecCommandRequest{SandboxId: sb.GetSandboxId(), Cmd: "sleep 0.5; pgrep -f 'sleep 30' || echo gone"})
	if err != nil || !strings.Contains(string(res.GetStdout()), "gone") {
		t.Fatalf("command outlived its cancelled stream: %v %v", res, err)
	}
}

// PTYStream is a live terminal over gRPC: keystrokes in, output out,
// resize, and the shell's exit code at the end.
func TestPTYStreamIsATerminal(t *testing.T) {
	cl, _ := serve(t)
	ctx := ctxT(t, time.Minute)
	sb, err := cl.CreateSandbox(ctx, &workerv1.CreateSandboxRequest{Config: &workerv1.SandboxConfig{Template: "busybox"}})
	if err != nil {
		t.Fatal(err)
	}
	pty, err := cl.CreatePTY(ctx, &workerv1.CreatePTYRequest{SandboxId: sb.GetSandboxId(), Cols: 100, Rows: 30})
	if err != nil || pty.GetSessionId() == "" {
		t.Fatalf("create pty %v %v", pty, err)
	}
	stream, err := cl.PTYStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	send := func(in *workerv1.PTYInput) {
		t.Helper()
		if err := stream.Send(in); err != nil {
			t.Fatal(err)
		}
	}
	data := func(s string) *workerv1.PTYInput {
		return &workerv1.PTYInput{Input: &workerv1.PTYInput_Data{Data: []byte(s)}}
	}
	send(&workerv1.PTYInput{Input: &workerv1.PTYInput_Attach_{Attach: &workerv1.PTYInput_Attach{SandboxId: sb.GetSandboxId(), SessionId: pty.GetSessionId()}}})
	var screen strings.Builder
	until := func(want string) {
		t.Helper()
		for !strings.Contains(screen.String(), want) {
			out, err := stream.Recv()
			if err != nil {
				t.Fatalf("waiting for %q: %v; screen so far %q", want, err, screen.String())
			}
			screen.Write(out.GetData())
		}
	}
	send(data("echo sum=$((40+2))\n"))
	until("sum=42")
	send(data("stty size\n"))
	until("30 100")
	send(&workerv1.PTYInput{Input: &workerv1.PTYInput_Resize_{Resize: &workerv1.PTYInput_Resize{Cols: 120, Rows: 40}}})
	send(data("stty size\n"))
	until("40 120")
	send(data("exit 5\n"))
	stream.CloseSend()
	for {
		out, err := stream.Recv()
		if err != nil {
			t.Fatalf("no exit message: %v", err)
		}
		if ex := out.GetExit(); ex != nil {
			if ex.GetExitCode() != 5 {
				t.Fatalf("exit code %d", ex.GetExitCode())
			}
			break
		}
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("after exit: %v", err)
	}

	// Attach must come first.
	bad, _ := cl.PTYStream(ctx)
	bad.Send(data("x"))
	if _, err := bad.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("data before attach: %v", err)
	}
}
