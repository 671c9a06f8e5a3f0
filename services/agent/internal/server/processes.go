package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/opensandbox/opensandbox/services/agent/internal/proc"
	"github.com/opensandbox/opensandbox/services/agent/internal/ringbuf"
	"github.com/opensandbox/opensandbox/services/shared/agentapi"
	"github.com/opensandbox/opensandbox/services/shared/api"
)

// maxStdinWrite bounds one stdin request; larger input takes several.
const maxStdinWrite = 16 << 20

// readJSON decodes a bounded JSON body and reads it to the end: net/http
// only notices that the worker hung up once the body is consumed, and a
// streaming handler relies on that to stop.
func readJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	body := http.MaxBytesReader(w, r.Body, limit)
	if err := json.NewDecoder(body).Decode(v); err != nil {
		return err
	}
	_, err := io.Copy(io.Discard, body)
	return err
}

func (s *Server) startProcess(w http.ResponseWriter, r *http.Request) {
	var req agentapi.StartRequest
	if err := readJSON(w, r, maxExecRequest, &req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_argument", "invalid process request: "+err.Error())
		return
	}
	spec, err := s.spec(req.ExecRequest)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_argument", err.Error())
		return
	}
	p, f, err := s.procs.Start(spec, proc.StartOptions{
		Cmd: req.Cmd, Args: req.Args, Cwd: req.Cwd, Tag: req.Tag,
		Stdin: req.Stdin, KeepStdin: req.KeepStdin,
		Timeout: time.Duration(req.TimeoutMs) * time.Millisecond, Follow: req.Follow,
	})
	switch {
	case errors.Is(err, proc.ErrNotFound) && req.Follow:
		// Like a plain run: the stream says 127, as a shell would.
		fs := startFrames(w)
		fs.send(agentapi.FrameStderr, []byte(err.Error()+"\n"))
		fs.sendJSON(agentapi.FrameExit, agentapi.Exit{ExitCode: 127})
		fs.flush()
		return
	case errors.Is(err, proc.ErrNotFound), errors.Is(err, os.ErrNotExist):
		writeError(w, http.StatusBadRequest, "invalid_argument", err.Error())
		return
	case errors.Is(err, proc.ErrTooMany):
		writeError(w, http.StatusTooManyRequests, "too_many_processes", err.Error())
		return
	case err != nil:
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	if !req.Follow {
		writeJSON(w, http.StatusOK, agentapi.Started{PID: p.PID})
		return
	}
	defer f.Close()
	fs := startFrames(w)
	if fs.sendJSON(agentapi.FrameStart, agentapi.Started{PID: p.PID}) != nil || s.follow(r.Context(), fs, p, f) != nil {
		// The worker went away before the process ended: a streamed run
		// lives only as long as its stream.
		p.Kill()
		s.log.Info("streamed process killed: stream closed", "pid", p.PID)
	}
}

// follow copies a process's output into frames until it exits; it
// returns nil once the Exit frame is sent. An observer that fell too far
// behind gets an Error frame (code stream_lagged) as its last frame.
func (s *Server) follow(ctx context.Context, fs *frameStream, p *proc.Process, f *proc.Follower) error {
	buf := make([]byte, 32<<10)
	for {
		stream, n, err := f.Next(fs.poll, buf)
		if errors.Is(err, context.Canceled) {
			// Nothing at hand: send what is buffered, then wait.
			if err := fs.flush(); err != nil {
				return err
			}
			stream, n, err = s.nextWithKeepalive(ctx, fs, f, buf)
		}
		if err == io.EOF {
			code, timedOut := p.Exit()
			if err := fs.sendJSON(agentapi.FrameExit, agentapi.Exit{ExitCode: code, TimedOut: timedOut}); err != nil {
				return err
			}
			return fs.flush()
		}
		if errors.Is(err, ringbuf.ErrLagged) {
			s.log.Info("process stream dropped: its reader fell behind", "pid", p.PID)
			fs.sendJSON(agentapi.FrameError, api.ErrorBody{Code: "stream_lagged",
				Error: fmt.Sprintf("the stream fell more than %d bytes behind the process's output and was dropped; connect again to resume from the kept output", proc.ReplayBytes)})
			fs.flush()
			return err
		}
		if err != nil {
			return err
		}
		typ := agentapi.FrameStdout
		if stream == 2 {
			typ = agentapi.FrameStderr
		}
		if err := fs.send(typ, buf[:n]); err != nil {
			return err
		}
	}
}

func (s *Server) nextWithKeepalive(ctx context.Context, fs *frameStream, f *proc.Follower, buf []byte) (int, int, error) {
	for {
		kctx, cancel := context.WithTimeout(ctx, agentapi.KeepaliveInterval)
		stream, n, err := f.Next(kctx, buf)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			if err := fs.keepalive(); err != nil {
				return 0, 0, err
			}
			continue
		}
		return stream, n, err
	}
}

func (s *Server) listProcesses(w http.ResponseWriter, r *http.Request) {
	out := []api.ProcessInfo{}
	for _, p := range s.procs.List() {
		info := api.ProcessInfo{PID: p.PID, Cmd: p.Cmd, Args: p.Args, Cwd: p.Cwd, Tag: p.Tag, StartedAt: p.StartedAt, Running: p.Running()}
		if info.Args == nil {
			info.Args = []string{}
		}
		if !info.Running {
			code, _ := p.Exit()
			info.ExitCode = &code
		}
		out = append(out, info)
	}
	writeJSON(w, http.StatusOK, out)
}

// process finds the {pid} of the URL or answers 404.
func (s *Server) process(w http.ResponseWriter, r *http.Request) (*proc.Process, bool) {
	pid, err := strconv.Atoi(r.PathValue("pid"))
	if err == nil {
		if p, ok := s.procs.Get(pid); ok {
			return p, true
		}
	}
	writeError(w, http.StatusNotFound, "process_not_found", "no such process: "+r.PathValue("pid"))
	return nil, false
}

func (s *Server) streamProcess(w http.ResponseWriter, r *http.Request) {
	p, ok := s.process(w, r)
	if !ok {
		return
	}
	// A connected client observes: the process never waits for it.
	f := p.Observe()
	defer f.Close()
	s.follow(r.Context(), startFrames(w), p, f)
}

func (s *Server) writeStdin(w http.ResponseWriter, r *http.Request) {
	p, ok := s.process(w, r)
	if !ok {
		return
	}
	err := p.WriteStdin(r.Context(), http.MaxBytesReader(w, r.Body, maxStdinWrite))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", "stdin writes are limited to 16 MiB per request")
	case errors.Is(err, proc.ErrStdinClosed):
		writeError(w, http.StatusConflict, "stdin_closed", "the process's stdin is closed")
	case err != nil:
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Server) closeStdin(w http.ResponseWriter, r *http.Request) {
	p, ok := s.process(w, r)
	if !ok {
		return
	}
	p.CloseStdin()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) signalProcess(w http.ResponseWriter, r *http.Request) {
	p, ok := s.process(w, r)
	if !ok {
		return
	}
	var req api.SignalRequest
	if err := readJSON(w, r, 1<<12, &req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_argument", "body must be {\"signal\": name or number}")
		return
	}
	sig, err := proc.ParseSignal(req.Signal)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_argument", err.Error())
		return
	}
	if err := p.Signal(sig); errors.Is(err, proc.ErrExited) {
		writeError(w, http.StatusConflict, "process_exited", "the process has exited")
		return
	} else if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) killProcess(w http.ResponseWriter, r *http.Request) {
	p, ok := s.process(w, r)
	if !ok {
		return
	}
	p.Kill()
	w.WriteHeader(http.StatusNoContent)
}
