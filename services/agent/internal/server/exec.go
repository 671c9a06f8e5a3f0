package server

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/opensandbox/opensandbox/services/agent/internal/proc"
	"github.com/opensandbox/opensandbox/services/shared/agentapi"
	"github.com/opensandbox/opensandbox/services/shared/api"
)

// maxExecRequest bounds the JSON of one exec request, stdin included.
const maxExecRequest = 16 << 20

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
	res, err := s.reaper.Run(r.Context(), spec, req.Stdin, time.Duration(req.TimeoutMs)*time.Millisecond, maxOut)
	switch {
	case r.Context().Err() != nil:
		s.log.Info("command killed: the worker hung up", "cmd", req.Cmd)
		return
	case errors.Is(err, proc.ErrNotFound):
		// A shell answers 127 for a missing command; argv mode does the same.
		writeJSON(w, http.StatusOK, api.ProcessResult{ExitCode: 127, Stderr: err.Error() + "\n"})
		return
	case errors.Is(err, os.ErrNotExist):
		writeError(w, http.StatusBadRequest, "invalid_argument", err.Error())
		return
	case err != nil:
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, api.ProcessResult{
		ExitCode:        res.ExitCode,
		Stdout:          string(res.Stdout),
		Stderr:          string(res.Stderr),
		StdoutTruncated: res.StdoutTruncated,
		StderrTruncated: res.StderrTruncated,
		TimedOut:        res.TimedOut,
		DurationMs:      res.Duration.Milliseconds(),
	})
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
