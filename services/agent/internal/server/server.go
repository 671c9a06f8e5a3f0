// Package server is the agent's HTTP API on its unix socket.
package server

import (
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"sync/atomic"
	"syscall"

	"github.com/opensandbox/opensandbox/services/agent/internal/proc"
	"github.com/opensandbox/opensandbox/services/agent/internal/term"
	"github.com/opensandbox/opensandbox/services/shared/agentapi"
	"github.com/opensandbox/opensandbox/services/shared/api"
)

// Server serves the agent protocol (see package agentapi).
type Server struct {
	log     *slog.Logger
	reaper  *proc.Reaper
	version string
	home    string // where relative paths and commands without cwd start

	procs   *proc.Table    // background and streamed processes
	ptys    *term.Sessions // terminal sessions
	watches atomic.Int64   // file watches in place

	mem          memory
	outputBudget *proc.Budget // output held by commands run to completion
}

// OutputBudget returns how many output bytes commands may hold at once: a
// quarter of the sandbox's memory, at least room for one command at the
// default caps, 256 MiB without a limit.
func OutputBudget(memLimit int64) int64 {
	if memLimit <= 0 {
		return 256 << 20
	}
	return max(memLimit/4, 2*agentapi.DefaultMaxOutput)
}

// New returns a server that starts processes through reaper.
func New(log *slog.Logger, reaper *proc.Reaper, version string) *Server {
	home := os.Getenv("HOME")
	if fi, err := os.Stat(home); home == "" || err != nil || !fi.IsDir() {
		home = "/"
	}
	mem := memory{root: "/sys/fs/cgroup"}
	return &Server{
		log: log, reaper: reaper, version: version, home: home, procs: proc.NewTable(reaper), ptys: term.NewSessions(reaper),
		mem: mem, outputBudget: proc.NewBudget(OutputBudget(mem.limit())),
	}
}

// MemoryLimit is the sandbox's memory limit as the agent sees it (0: none).
func (s *Server) MemoryLimit() int64 { return s.mem.limit() }

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", s.health)
	mux.HandleFunc("POST /exec", s.exec)
	mux.HandleFunc("GET /files", s.readFile)
	mux.HandleFunc("PUT /files", s.writeFile)
	mux.HandleFunc("DELETE /files", s.remove)
	mux.HandleFunc("GET /files/list", s.list)
	mux.HandleFunc("GET /files/stat", s.stat)
	mux.HandleFunc("POST /files/mkdir", s.mkdir)
	mux.HandleFunc("POST /files/rename", s.rename)
	mux.HandleFunc("GET /files/watch", s.watchFiles)

	mux.HandleFunc("POST /processes", s.startProcess)
	mux.HandleFunc("GET /processes", s.listProcesses)
	mux.HandleFunc("GET /processes/{pid}/stream", s.streamProcess)
	mux.HandleFunc("POST /processes/{pid}/stdin", s.writeStdin)
	mux.HandleFunc("DELETE /processes/{pid}/stdin", s.closeStdin)
	mux.HandleFunc("POST /processes/{pid}/signal", s.signalProcess)
	mux.HandleFunc("DELETE /processes/{pid}", s.killProcess)

	mux.HandleFunc("POST /pty", s.createPTY)
	mux.HandleFunc("GET /pty", s.listPTY)
	mux.HandleFunc("GET /pty/{id}", s.getPTY)
	mux.HandleFunc("GET /pty/{id}/attach", s.attachPTY)
	mux.HandleFunc("GET /pty/{id}/wait", s.waitPTY)
	mux.HandleFunc("POST /pty/{id}/resize", s.resizePTY)
	mux.HandleFunc("DELETE /pty/{id}", s.deletePTY)
	return mux
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, agentapi.Health{
		OK: true, PID: os.Getpid(), Version: s.version,
		Processes: s.procs.Running(), PTYSessions: s.ptys.Running(), Watches: int(s.watches.Load()),
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, api.ErrorBody{Error: msg, Code: code})
}

// writeFSError maps a file system error to the status the worker passes on.
func writeFSError(w http.ResponseWriter, path string, err error) {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		writeError(w, http.StatusNotFound, "file_not_found", "no such file or directory: "+path)
	case errors.Is(err, fs.ErrPermission):
		writeError(w, http.StatusForbidden, "permission_denied", "permission denied: "+path)
	case errors.Is(err, syscall.ENOTDIR):
		writeError(w, http.StatusBadRequest, "not_a_directory", "not a directory: "+path)
	case errors.Is(err, syscall.EISDIR):
		writeError(w, http.StatusBadRequest, "is_a_directory", "is a directory: "+path)
	case errors.Is(err, fs.ErrExist), errors.Is(err, syscall.ENOTEMPTY):
		writeError(w, http.StatusConflict, "file_exists", "already exists: "+path)
	case errors.Is(err, syscall.ENOSPC):
		writeError(w, http.StatusInsufficientStorage, "no_space", "no space left on device")
	default:
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
	}
}
