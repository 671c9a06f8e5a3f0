package httpapi

import (
	"context"

	"github.com/gofiber/fiber/v2"
	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/worker/sandbox"
)

func (h *Handlers) watchFiles(c *fiber.Ctx) error {
	id, err := h.sandboxID(c)
	if err != nil {
		return err
	}
	path, err := pathQuery(c)
	if err != nil {
		return err
	}
	rec := c.Query("recursive")
	ctx, cancel := context.WithCancel(c.UserContext())
	w, err := h.ia.WatchDir(ctx, id, path, rec == "true" || rec == "1")
	if err != nil {
		cancel()
		return err
	}
	return serveSSE(c, &watchSource{w: w}, cancel)
}

// watchSource feeds a file watch to SSE, starting with the ready event.
type watchSource struct {
	w     *sandbox.Watch
	ready bool
}

func (s *watchSource) next() (string, any, error) {
	if !s.ready {
		s.ready = true
		return api.WatchReady, api.WatchEvent{Type: api.WatchReady}, nil
	}
	ev, err := s.w.Next()
	return ev.Type, ev, err
}

func (s *watchSource) close() { s.w.Close() }
