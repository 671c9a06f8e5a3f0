package server

import (
	"context"
	"errors"
	"net/http"
	"os"
	"time"

	"github.com/opensandbox/opensandbox/services/agent/internal/watch"
	"github.com/opensandbox/opensandbox/services/shared/agentapi"
)

// watchFiles streams file system events under a path until the worker
// hangs up; the inotify instance, and with it every kernel watch, is
// released when the handler returns.
func (s *Server) watchFiles(w http.ResponseWriter, r *http.Request) {
	path, ok := s.pathParam(w, r, "path")
	if !ok {
		return
	}
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
	s.watches.Add(1)
	defer s.watches.Add(-1)
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
