package grpcserver

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/shared/errs"
	"github.com/opensandbox/opensandbox/services/shared/proto/workerv1"
	"google.golang.org/grpc"
)

// ExecCommandStream runs a command and sends its output as it comes. The
// call's context is the command's: a client that cancels kills it.
func (s *Server) ExecCommandStream(r *workerv1.ExecCommandRequest, stream grpc.ServerStreamingServer[workerv1.ExecCommandEvent]) error {
	start := time.Now()
	return s.sb.ExecStream(stream.Context(), r.GetSandboxId(), processConfig(r), func(ev api.ProcessEvent) error {
		var out workerv1.ExecCommandEvent
		switch ev.Type {
		case api.EventStart:
			out.Event = &workerv1.ExecCommandEvent_Started_{Started: &workerv1.ExecCommandEvent_Started{Pid: int32(ev.PID)}}
		case api.EventStdout:
			out.Event = &workerv1.ExecCommandEvent_Stdout{Stdout: ev.Data}
		case api.EventStderr:
			out.Event = &workerv1.ExecCommandEvent_Stderr{Stderr: ev.Data}
		case api.EventExit:
			out.Event = &workerv1.ExecCommandEvent_Exit{Exit: &workerv1.ExecCommandEvent_Exited{
				ExitCode: int32(ev.ExitCode), TimedOut: ev.TimedOut, DurationMs: time.Since(start).Milliseconds(),
			}}
		case api.EventError:
			// The stream broke after it started: end the call with the error.
			return &errs.Error{Kind: errs.KindUnavailable, Code: ev.Code, Message: ev.Error}
		default: // keepalives: gRPC keeps its own connection alive
			return nil
		}
		return stream.Send(&out)
	})
}

// CreatePTY starts a terminal session in a sandbox.
func (s *Server) CreatePTY(ctx context.Context, r *workerv1.CreatePTYRequest) (*workerv1.CreatePTYResponse, error) {
	sess, err := s.sb.CreatePTY(ctx, r.GetSandboxId(), api.PTYConfig{
		Cols: int(r.GetCols()), Rows: int(r.GetRows()), Shell: r.GetShell(), Envs: r.GetEnvs(), Cwd: r.GetCwd(),
	})
	if err != nil {
		return nil, err
	}
	return &workerv1.CreatePTYResponse{SessionId: sess.SessionID, SandboxId: sess.SandboxID}, nil
}

// ptyChunk is the most terminal output sent in one message.
const ptyChunk = 32 << 10

// PTYStream attaches the call to a terminal session: keystrokes and resizes
// in, terminal output out, then the shell's exit. Ending the call detaches;
// the shell keeps running until it exits or the session is killed.
func (s *Server) PTYStream(stream grpc.BidiStreamingServer[workerv1.PTYInput, workerv1.PTYOutput]) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	at := first.GetAttach()
	if at == nil {
		return errs.Invalid("the first PTYStream message must be attach")
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	conn, err := s.sb.AttachPTY(ctx, at.GetSandboxId(), at.GetSessionId())
	if err != nil {
		return err
	}
	defer conn.Close()

	inErr := make(chan error, 1)
	go func() {
		// A client that closes its side still reads the output to the end;
		// a failed receive ends the attachment.
		if err := pumpInput(stream, conn); err != nil {
			inErr <- err
			cancel()
		}
	}()
	go func() {
		<-ctx.Done()
		conn.Close() // unblocks Read
	}()

	buf := make([]byte, ptyChunk)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			if serr := stream.Send(&workerv1.PTYOutput{Output: &workerv1.PTYOutput_Data{Data: append([]byte(nil), buf[:n]...)}}); serr != nil {
				return serr
			}
		}
		if errors.Is(err, io.EOF) {
			code, _ := conn.ExitCode()
			return stream.Send(&workerv1.PTYOutput{Output: &workerv1.PTYOutput_Exit_{Exit: &workerv1.PTYOutput_Exit{ExitCode: int32(code)}}})
		}
		if err != nil {
			if ctx.Err() != nil {
				// The client went away (or closed its side): a detach, not a failure.
				select {
				case e := <-inErr:
					return e
				default:
					return nil
				}
			}
			return err
		}
	}
}

// ptyInput is what PTYStream writes keystrokes and resizes to.
type ptyInput interface {
	Write(p []byte) (int, error)
	Resize(cols, rows int) error
}

// pumpInput copies the client's messages to the terminal until the client
// closes its side (nil) or the call fails.
func pumpInput(stream grpc.BidiStreamingServer[workerv1.PTYInput, workerv1.PTYOutput], conn ptyInput) error {
	for {
		in, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch {
		case in.GetResize() != nil:
			if err := conn.Resize(int(in.GetResize().GetCols()), int(in.GetResize().GetRows())); err != nil {
				return err
			}
		case in.GetData() != nil:
			if _, err := conn.Write(in.GetData()); err != nil {
				return err
			}
		case in.GetAttach() != nil:
			return errs.Invalid("attach may only be the first message")
		}
	}
}
