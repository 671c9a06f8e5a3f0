// Package grpcserver serves the SandboxWorker gRPC API (worker.proto) over a
// worker's sandbox manager. Authentication and the error-to-status mapping
// are the server options' job (package grpcx); handlers return errs errors.
package grpcserver

import (
	"bytes"
	"context"
	"io"
	"sync/atomic"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/shared/errs"
	"github.com/opensandbox/opensandbox/services/shared/grpcx"
	"github.com/opensandbox/opensandbox/services/shared/proto/workerv1"
	"github.com/opensandbox/opensandbox/services/worker/sandbox"
)

// Sandboxes is what the server needs from the sandbox manager.
type Sandboxes interface {
	Create(ctx context.Context, cfg api.SandboxConfig, opts sandbox.CreateOptions) (api.Sandbox, error)
	Get(ctx context.Context, id string) (api.Sandbox, error)
	List(ctx context.Context, orgID string) []api.Sandbox
	Kill(ctx context.Context, id string) error
	SetTimeout(ctx context.Context, id string, d time.Duration) (api.Sandbox, error)
	OrgOf(id string) (string, error)

	Exec(ctx context.Context, id string, p api.ProcessConfig) (api.ProcessResult, error)
	ReadFile(ctx context.Context, id, path, rangeHdr string) (*sandbox.FileReader, error)
	WriteFile(ctx context.Context, id, path, mode string, r io.Reader, size int64) (api.EntryInfo, error)
	ListDir(ctx context.Context, id, path string, depth int) ([]api.EntryInfo, error)

	ExecStream(ctx context.Context, id string, p api.ProcessConfig, emit func(api.ProcessEvent) error) error
	CreatePTY(ctx context.Context, id string, cfg api.PTYConfig) (api.PTYSession, error)
	AttachPTY(ctx context.Context, id, sessionID string) (*sandbox.PTYConn, error)
}

var _ Sandboxes = (*sandbox.Manager)(nil)

// maxFile bounds a file carried in one message (the data path streams any size).
const maxFile = grpcx.MaxMessage - 1<<20

// Server implements workerv1.SandboxWorkerServer.
type Server struct {
	workerv1.UnimplementedSandboxWorkerServer
	sb       Sandboxes
	draining atomic.Bool
	drainer  Drainer
}

var _ workerv1.SandboxWorkerServer = (*Server)(nil)

// Drainer announces that the worker starts (or stops) draining: its
// heartbeat and its Consul registration say so.
type Drainer func(ctx context.Context, on bool)

// New returns a server over sb; drainer (optional) is told of drains.
func New(sb Sandboxes, drainer Drainer) *Server { return &Server{sb: sb, drainer: drainer} }

// Draining reports whether the worker refuses new sandboxes.
func (s *Server) Draining() bool { return s.draining.Load() }

// SetDraining makes the worker refuse (or take again) new sandboxes; the
// ones it runs go on until they end.
func (s *Server) SetDraining(ctx context.Context, r *workerv1.SetDrainingRequest) (*workerv1.SetDrainingResponse, error) {
	s.draining.Store(r.GetDraining())
	if s.drainer != nil {
		s.drainer(ctx, r.GetDraining())
	}
	return &workerv1.SetDrainingResponse{Current: int32(len(s.sb.List(ctx, "")))}, nil
}

func (s *Server) CreateSandbox(ctx context.Context, r *workerv1.CreateSandboxRequest) (*workerv1.Sandbox, error) {
	if s.draining.Load() {
		return nil, errs.Unavailable("worker_draining", "the worker is draining: it takes no new sandboxes")
	}
	sb, err := s.sb.Create(ctx, workerv1.ConfigFromProto(r.GetConfig()), sandbox.CreateOptions{OrgID: r.GetOrgId()})
	if err != nil {
		return nil, err
	}
	return workerv1.SandboxToProto(sb, r.GetOrgId()), nil
}

func (s *Server) DestroySandbox(ctx context.Context, r *workerv1.DestroySandboxRequest) (*workerv1.DestroySandboxResponse, error) {
	if err := s.sb.Kill(ctx, r.GetSandboxId()); err != nil {
		return nil, err
	}
	return &workerv1.DestroySandboxResponse{}, nil
}

func (s *Server) GetSandbox(ctx context.Context, r *workerv1.GetSandboxRequest) (*workerv1.Sandbox, error) {
	sb, err := s.sb.Get(ctx, r.GetSandboxId())
	if err != nil {
		return nil, err
	}
	org, _ := s.sb.OrgOf(sb.SandboxID)
	return workerv1.SandboxToProto(sb, org), nil
}

func (s *Server) ListSandboxes(ctx context.Context, r *workerv1.ListSandboxesRequest) (*workerv1.ListSandboxesResponse, error) {
	list := s.sb.List(ctx, r.GetOrgId())
	out := &workerv1.ListSandboxesResponse{Sandboxes: make([]*workerv1.Sandbox, 0, len(list))}
	for _, sb := range list {
		org, _ := s.sb.OrgOf(sb.SandboxID)
		out.Sandboxes = append(out.Sandboxes, workerv1.SandboxToProto(sb, org))
	}
	return out, nil
}

func (s *Server) SetTimeout(ctx context.Context, r *workerv1.SetTimeoutRequest) (*workerv1.Sandbox, error) {
	if r.GetTimeoutSeconds() <= 0 {
		return nil, errs.Invalid("timeout must be a positive number of seconds")
	}
	sb, err := s.sb.SetTimeout(ctx, r.GetSandboxId(), time.Duration(r.GetTimeoutSeconds())*time.Second)
	if err != nil {
		return nil, err
	}
	org, _ := s.sb.OrgOf(sb.SandboxID)
	return workerv1.SandboxToProto(sb, org), nil
}

func processConfig(r *workerv1.ExecCommandRequest) api.ProcessConfig {
	p := api.ProcessConfig{
		Cmd: r.GetCmd(), Args: r.GetArgs(), Envs: r.GetEnvs(), Cwd: r.GetCwd(), Timeout: int(r.GetTimeoutSeconds()),
	}
	if r.Stdin != nil {
		in := string(r.Stdin)
		p.Stdin = &in
	}
	return p
}

func (s *Server) ExecCommand(ctx context.Context, r *workerv1.ExecCommandRequest) (*workerv1.ExecCommandResponse, error) {
	res, err := s.sb.Exec(ctx, r.GetSandboxId(), processConfig(r))
	if err != nil {
		return nil, err
	}
	return &workerv1.ExecCommandResponse{
		ExitCode: int32(res.ExitCode), Stdout: []byte(res.Stdout), Stderr: []byte(res.Stderr),
		StdoutTruncated: res.StdoutTruncated, StderrTruncated: res.StderrTruncated,
		TimedOut: res.TimedOut, DurationMs: res.DurationMs,
	}, nil
}

func (s *Server) ReadFile(ctx context.Context, r *workerv1.ReadFileRequest) (*workerv1.ReadFileResponse, error) {
	if r.GetPath() == "" {
		return nil, errs.Invalid("path is required")
	}
	f, err := s.sb.ReadFile(ctx, r.GetSandboxId(), r.GetPath(), "")
	if err != nil {
		return nil, err
	}
	defer f.Body.Close()
	if f.Size > maxFile {
		return nil, errs.TooLarge("file of %d bytes is over the gRPC limit of %d bytes; use the worker's HTTP data path", f.Size, maxFile)
	}
	b, err := io.ReadAll(io.LimitReader(f.Body, maxFile+1))
	if err != nil {
		return nil, errs.Internal("read file", err)
	}
	if len(b) > maxFile {
		return nil, errs.TooLarge("file is over the gRPC limit of %d bytes; use the worker's HTTP data path", maxFile)
	}
	return &workerv1.ReadFileResponse{Content: b, Mode: f.Mode}, nil
}

func (s *Server) WriteFile(ctx context.Context, r *workerv1.WriteFileRequest) (*workerv1.EntryInfo, error) {
	if r.GetPath() == "" {
		return nil, errs.Invalid("path is required")
	}
	e, err := s.sb.WriteFile(ctx, r.GetSandboxId(), r.GetPath(), r.GetMode(), bytes.NewReader(r.GetContent()), int64(len(r.GetContent())))
	if err != nil {
		return nil, err
	}
	return workerv1.EntryToProto(e), nil
}

func (s *Server) ListDir(ctx context.Context, r *workerv1.ListDirRequest) (*workerv1.ListDirResponse, error) {
	if r.GetPath() == "" {
		return nil, errs.Invalid("path is required")
	}
	depth := int(r.GetDepth())
	if depth <= 0 {
		depth = 1
	}
	list, err := s.sb.ListDir(ctx, r.GetSandboxId(), r.GetPath(), depth)
	if err != nil {
		return nil, err
	}
	out := &workerv1.ListDirResponse{Entries: make([]*workerv1.EntryInfo, 0, len(list))}
	for _, e := range list {
		out.Entries = append(out.Entries, workerv1.EntryToProto(e))
	}
	return out, nil
}
