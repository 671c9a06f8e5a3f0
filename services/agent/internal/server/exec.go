package server

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/opensandbox/opensandbox/services/agent/internal/proc"
	"github.com/opensandbox/opensandbox/services/shared/agentapi"
	"github.com/opensandbox/opensandbox/services/shared/api"
)

// maxExecRequest bounds the JSON of one exec request, stdin included.
const maxExecRequest = 16 << 20

// outputFrame is the largest output frame of a framed exec answer: small
// enough that the worker reading it holds little at a time.
const outputFrame = 64 << 10

// exec runs a command to completion. The body is read to its end, so that
// net/http notices when the worker hangs up: the command's process group is
// then killed instead of running on to its timeout.
func (s *Server) exec(w http.ResponseWriter, r *http.Request) {
	var req agentapi.ExecRequest
	if err := readJSON(w, r, maxExecRequest, &req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_argument", "invalid exec request: "+err.Error())
		return
	}
	spec, err := s.spec(req)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_argument", err.Error())
		return
	}
	maxOut := req.MaxOutput
	if maxOut <= 0 {
		maxOut = agentapi.DefaultMaxOutput
	}
	framed := strings.Contains(r.Header.Get("Accept"), agentapi.FramesContentType)
	oomBefore := s.mem.oomKills()
	res, err := s.reaper.Run(r.Context(), spec, req.Stdin, time.Duration(req.TimeoutMs)*time.Millisecond, maxOut, s.outputBudget)
	switch {
	case r.Context().Err() != nil:
		s.log.Info("command killed: the worker hung up", "cmd", req.Cmd)
		return
	case errors.Is(err, proc.ErrNotFound):
		// A shell answers 127 for a missing command; argv mode does the same.
		msg := err.Error() + "\n"
		if framed {
			f := startFrames(w)
			f.sendJSON(agentapi.FrameExit, agentapi.ExecExit{ExitCode: 127, StderrLen: len(msg)})
			f.send(agentapi.FrameStderr, []byte(msg))
			f.flush()
			return
		}
		writeJSON(w, http.StatusOK, api.ProcessResult{ExitCode: 127, Stderr: msg})
		return
	case errors.Is(err, os.ErrNotExist):
		writeError(w, http.StatusBadRequest, "invalid_argument", err.Error())
		return
	case err != nil:
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	defer res.Release()
	exit := agentapi.ExecExit{
		ExitCode:        res.ExitCode,
		TimedOut:        res.TimedOut,
		DurationMs:      res.Duration.Milliseconds(),
		DurationUs:      res.Duration.Microseconds(),
		StdoutLen:       res.Stdout.Len(),
		StderrLen:       res.Stderr.Len(),
		StdoutTruncated: res.Stdout.Truncated(),
		StderrTruncated: res.Stderr.Truncated(),
		OOMKilled:       res.ExitCode == 128+int(syscall.SIGKILL) && s.mem.oomKills() > oomBefore,
	}
	if exit.OOMKilled {
		s.log.Warn("command killed: the sandbox ran out of memory", "cmd", req.Cmd)
	}
	if !framed {
		writeJSON(w, http.StatusOK, api.ProcessResult{
			ExitCode: exit.ExitCode, Stdout: string(res.Stdout.Bytes()), Stderr: string(res.Stderr.Bytes()),
			StdoutTruncated: exit.StdoutTruncated, StderrTruncated: exit.StderrTruncated,
			TimedOut: exit.TimedOut, DurationMs: exit.DurationMs, OOMKilled: exit.OOMKilled,
		})
		return
	}
	f := startFrames(w)
	if err := f.sendJSON(agentapi.FrameExit, exit); err != nil {
		return
	}
	for _, out := range []struct {
		typ byte
		o   *proc.Output
	}{{agentapi.FrameStdout, res.Stdout}, {agentapi.FrameStderr, res.Stderr}} {
		for _, c := range out.o.Chunks() {
			for len(c) > 0 {
				k := min(len(c), outputFrame)
				if err := f.send(out.typ, c[:k]); err != nil {
					return // the worker hung up
				}
				c = c[k:]
			}
		}
	}
	f.flush()
}

// spec turns a request into argv, environment and working directory.
func (s *Server) spec(req agentapi.ExecRequest) (proc.Spec, error) {
	if req.Cmd == "" {
		return proc.Spec{}, errors.New("cmd is required")
	}
	argv := append([]string{req.Cmd}, req.Args...)
	if req.Shell {
		argv = []string{"/bin/sh", "-c", req.Cmd}
	}
	env := proc.MergeEnv(os.Environ(), req.Envs)
	if proc.Getenv(env, "PATH") == "" {
		env = append(env, "PATH="+proc.DefaultPath)
	}
	return proc.Spec{Argv: argv, Env: env, Dir: s.resolve(req.Cwd)}, nil
}

// resolve makes p absolute against the agent's home directory.
func (s *Server) resolve(p string) string {
	if p == "" {
		return s.home
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(s.home, p)
	}
	return filepath.Clean(p)
}
