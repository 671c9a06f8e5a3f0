package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/opensandbox/opensandbox/services/agent/internal/watch"
	"github.com/opensandbox/opensandbox/services/shared/agentapi"
)

// maxWatches bounds the file watches of one agent. Each holds an inotify
// instance, and those count against a per-user limit of the host kernel
// (fs.inotify.max_user_instances, 128 by default) that every sandbox
// running as root shares.
const maxWatches = 32

// watchFiles streams file system events under a path until the worker
// hangs up; the inotify instance, and with it every kernel watch, is
// released when the handler returns.
func (s *Server) watchFiles(w http.ResponseWriter, r *http.Request) {
	path, ok := s.pathParam(w, r, "path")
	if !ok {
		return
	}
	if s.watches.Add(1) > maxWatches {
		s.watches.Add(-1)
		writeError(w, http.StatusTooManyRequests, "too_many_watches", fmt.Sprintf("at most %d file watches at once in a sandbox", maxWatches))
		return
	}
	defer s.watches.Add(-1)
	rec := r.URL.Query().Get("recursive")
	wt, err := watch.New(path, rec == "true" || rec == "1")
	if errors.Is(err, watch.ErrTooManyDirs) {
		writeError(w, http.StatusBadRequest, "invalid_argument", err.Error())
		return
	}
	if err != nil {
		writeFSError(w, path, err)
		return
	}
	defer wt.Close()
	stop := context.AfterFunc(r.Context(), func() { wt.Close() })
	defer stop()

	fs := startFrames(w)
	if fs.send(agentapi.FrameReady, nil) != nil || fs.flush() != nil {
		return
	}
	for {
		wt.SetReadDeadline(time.Now().Add(agentapi.KeepaliveInterval))
		ev, err := wt.Next()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if fs.keepalive() != nil {
				return
			}
			continue
		}
		if err != nil {
			fs.flush()
			return
		}
		if fs.sendJSON(agentapi.FrameEvent, ev) != nil || fs.flush() != nil {
			return
		}
	}
}
