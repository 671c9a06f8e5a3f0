package httpapi

import (
	"context"
	"io"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/shared/errs"
	"github.com/opensandbox/opensandbox/services/shared/httpx"
	"github.com/opensandbox/opensandbox/services/worker/sandbox"
)

// maxStdinWrite bounds one stdin request (it is streamed, not held).
const maxStdinWrite = 16 << 20

// wantsStream reports whether a commands request asks for an event stream.
func wantsStream(c *fiber.Ctx, p api.ProcessConfig) bool {
	return p.Stream || strings.Contains(c.Get(fiber.HeaderAccept), "text/event-stream")
}

// runInteractive answers a commands request that streams or runs in the
// background; it reports false for a plain run.
func (h *Handlers) runInteractive(c *fiber.Ctx, id string, p api.ProcessConfig) (bool, error) {
	if h.ia == nil || (!p.Background && !wantsStream(c, p)) {
		return false, nil
	}
	if p.Background && p.Stream {
		return true, errs.Invalid("background and stream exclude each other")
	}
	if p.Background {
		st, err := h.ia.StartProcess(c.UserContext(), id, p)
		if err != nil {
			return true, err
		}
		return true, c.JSON(st)
	}
	ctx, cancel := context.WithCancel(c.UserContext())
	ps, err := h.ia.StreamProcess(ctx, id, p)
	if err != nil {
		cancel()
		return true, err
	}
	return true, serveSSE(c, processSource{ps}, cancel)
}

// processSource feeds a process stream to SSE.
type processSource struct{ ps *sandbox.ProcessStream }

func (s processSource) next() (string, any, error) {
	ev, err := s.ps.Next()
	return ev.Type, ev, err
}

func (s processSource) close() { s.ps.Close() }

func pidParam(c *fiber.Ctx) (int, error) {
	pid, err := strconv.Atoi(c.Params("pid"))
	if err != nil || pid <= 0 {
		return 0, errs.Invalid("pid must be a positive integer")
	}
	return pid, nil
}

// sandboxPID returns the :id (checked against the caller's org) and :pid.
func (h *Handlers) sandboxPID(c *fiber.Ctx) (string, int, error) {
	id, err := h.sandboxID(c)
	if err != nil {
		return "", 0, err
	}
	pid, err := pidParam(c)
	return id, pid, err
}

func (h *Handlers) listProcesses(c *fiber.Ctx) error {
	id, err := h.sandboxID(c)
	if err != nil {
		return err
	}
	list, err := h.ia.Processes(c.UserContext(), id)
	if err != nil {
		return err
	}
	return c.JSON(list)
}

func (h *Handlers) connectProcess(c *fiber.Ctx) error {
	id, pid, err := h.sandboxPID(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(c.UserContext())
	ps, err := h.ia.ConnectProcess(ctx, id, pid)
	if err != nil {
		cancel()
		return err
	}
	return serveSSE(c, processSource{ps}, cancel)
}

func (h *Handlers) writeStdin(c *fiber.Ctx) error {
	id, pid, err := h.sandboxPID(c)
	if err != nil {
		return err
	}
	if n := c.Request().Header.ContentLength(); n > maxStdinWrite {
		drain(c)
		return errs.TooLarge("stdin writes are limited to %d bytes per request", maxStdinWrite)
	}
	body := &limitReader{r: httpx.BodyReader(c), left: maxStdinWrite}
	err = h.ia.WriteStdin(c.UserContext(), id, pid, io.Reader(body))
	if body.over {
		drain(c)
		return errs.TooLarge("stdin writes are limited to %d bytes per request", maxStdinWrite)
	}
	if err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}

func (h *Handlers) closeStdin(c *fiber.Ctx) error {
	id, pid, err := h.sandboxPID(c)
	if err != nil {
		return err
	}
	if err := h.ia.CloseStdin(c.UserContext(), id, pid); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}

func (h *Handlers) signalProcess(c *fiber.Ctx) error {
	id, pid, err := h.sandboxPID(c)
	if err != nil {
		return err
	}
	var req api.SignalRequest
	if err := httpx.ReadJSON(c, &req); err != nil {
		return err
	}
	if err := h.ia.SignalProcess(c.UserContext(), id, pid, req.Signal); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}

func (h *Handlers) killProcess(c *fiber.Ctx) error {
	id, pid, err := h.sandboxPID(c)
	if err != nil {
		return err
	}
	if err := h.ia.KillProcess(c.UserContext(), id, pid); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}
