// Package httpapi serves the sandbox REST API over Fiber: lifecycle routes
// (create, list, get, kill, timeout) and data-path routes (commands, files).
// Authentication is the caller's middleware; this package only checks that a
// caller scoped to an org touches that org's sandboxes.
package httpapi

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/shared/auth"
	"github.com/opensandbox/opensandbox/services/shared/errs"
	"github.com/opensandbox/opensandbox/services/shared/httpx"
	"github.com/opensandbox/opensandbox/services/worker/sandbox"
)

// Sandboxes is what the routes need from the sandbox manager.
type Sandboxes interface {
	Create(ctx context.Context, cfg api.SandboxConfig, opts sandbox.CreateOptions) (api.Sandbox, error)
	Get(ctx context.Context, id string) (api.Sandbox, error)
	List(ctx context.Context, orgID string) []api.Sandbox
	Kill(ctx context.Context, id string) error
	SetTimeout(ctx context.Context, id string, d time.Duration) (api.Sandbox, error)
	OrgOf(id string) (string, error)

	Command(ctx context.Context, id string, p api.ProcessConfig) (*sandbox.ExecResult, error)
	ReadFile(ctx context.Context, id, path, rangeHdr string) (*sandbox.FileReader, error)
	WriteFile(ctx context.Context, id, path, mode string, r io.Reader, size int64) (api.EntryInfo, error)
	ListDir(ctx context.Context, id, path string, depth int) ([]api.EntryInfo, error)
	Stat(ctx context.Context, id, path string) (api.EntryInfo, error)
	MakeDir(ctx context.Context, id, path string) (api.EntryInfo, error)
	Remove(ctx context.Context, id, path string) error
	Rename(ctx context.Context, id, from, to string) (api.EntryInfo, error)
}

var _ Sandboxes = (*sandbox.Manager)(nil)

// LocalOrgID is the Fiber local an auth middleware sets to scope a request to
// one org; unset or "" means the caller may see every sandbox.
const LocalOrgID = "orgID"

// Handlers serves the routes.
type Handlers struct {
	sb        Sandboxes
	ia        Interactive // sb, when it also streams; nil otherwise
	maxUpload int64
}

// New returns handlers; maxUpload bounds one file upload in bytes.
func New(sb Sandboxes, maxUpload int64) *Handlers {
	ia, _ := sb.(Interactive)
	return &Handlers{sb: sb, ia: ia, maxUpload: maxUpload}
}

// MountLifecycle adds create, list, get, kill and timeout routes.
func (h *Handlers) MountLifecycle(r fiber.Router) {
	r.Post("/sandboxes", h.create)
	r.Get("/sandboxes", h.list)
	r.Get("/sandboxes/:id", h.get)
	r.Delete("/sandboxes/:id", h.kill)
	r.Post("/sandboxes/:id/timeout", h.setTimeout)
}

// MountData adds the data-path routes: commands and files, and, when the
// manager implements Interactive, streamed and background processes,
// terminals (WebSocket) and file watch (see docs/api.md). Reads of files
// take any scope; everything else needs the full one (auth.RequireFull):
// read-only credentials never run, write, stream, watch or type anything.
func (h *Handlers) MountData(r fiber.Router) {
	if h.ia != nil {
		h.mountInteractive(r)
	}
	full := auth.RequireFull
	r.Post("/sandboxes/:id/commands", full, h.exec)
	r.Get("/sandboxes/:id/files", h.readFile)
	r.Put("/sandboxes/:id/files", full, h.writeFile)
	r.Delete("/sandboxes/:id/files", full, h.removeFile)
	r.Get("/sandboxes/:id/files/list", h.listDir)
	r.Get("/sandboxes/:id/files/stat", h.stat)
	r.Post("/sandboxes/:id/files/mkdir", full, h.makeDir)
	r.Post("/sandboxes/:id/files/rename", full, h.rename)
}

func orgOf(c *fiber.Ctx) string {
	s, _ := c.Locals(LocalOrgID).(string)
	return s
}

// sandboxID returns the :id of the URL after checking the caller's org owns it.
func (h *Handlers) sandboxID(c *fiber.Ctx) (string, error) {
	id := c.Params("id")
	if org := orgOf(c); org != "" {
		owner, err := h.sb.OrgOf(id)
		if err != nil {
			return "", err
		}
		if owner != org {
			return "", errs.ErrSandboxNotFound // do not reveal other orgs' sandboxes
		}
	}
	return id, nil
}

func (h *Handlers) create(c *fiber.Ctx) error {
	var cfg api.SandboxConfig
	if err := httpx.ReadJSON(c, &cfg); err != nil {
		return err
	}
	sb, err := h.sb.Create(c.UserContext(), cfg, sandbox.CreateOptions{OrgID: orgOf(c)})
	if err != nil {
		return err
	}
	return c.Status(fiber.StatusCreated).JSON(sb)
}

func (h *Handlers) list(c *fiber.Ctx) error {
	return c.JSON(h.sb.List(c.UserContext(), orgOf(c)))
}

func (h *Handlers) get(c *fiber.Ctx) error {
	id, err := h.sandboxID(c)
	if err != nil {
		return err
	}
	sb, err := h.sb.Get(c.UserContext(), id)
	if err != nil {
		return err
	}
	return c.JSON(sb)
}

func (h *Handlers) kill(c *fiber.Ctx) error {
	id, err := h.sandboxID(c)
	if err != nil {
		return err
	}
	if err := h.sb.Kill(c.UserContext(), id); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}

func (h *Handlers) setTimeout(c *fiber.Ctx) error {
	id, err := h.sandboxID(c)
	if err != nil {
		return err
	}
	var req api.TimeoutRequest
	if err := httpx.ReadJSON(c, &req); err != nil {
		return err
	}
	if req.Timeout <= 0 {
		return errs.Invalid("timeout must be a positive number of seconds")
	}
	if _, err := h.sb.SetTimeout(c.UserContext(), id, time.Duration(req.Timeout)*time.Second); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}

func (h *Handlers) exec(c *fiber.Ctx) error {
	id, err := h.sandboxID(c)
	if err != nil {
		return err
	}
	var p api.ProcessConfig
	if err := httpx.ReadJSON(c, &p); err != nil {
		return err
	}
	if done, err := h.runInteractive(c, id, p); done {
		return err
	}
	// A client that hangs up cancels the command (the agent kills it)
	// rather than leaving it to run to its timeout.
	ctx, cancel := context.WithCancel(c.UserContext())
	stop := watchHangup(c.Context().Conn(), cancel)
	done := func() { stop(); cancel() }
	before := httpx.SinceStart(c) // routing, authentication, reading the request
	res, err := h.sb.Command(ctx, id, p)
	if err != nil {
		done()
		return err
	}
	c.Set("Server-Timing", serverTiming(before, res.Timing))
	if res.StdoutLen+res.StderrLen <= bufferedAnswer {
		defer done()
		whole, err := res.Collect()
		if err != nil {
			return err
		}
		return c.JSON(whole)
	}
	// The output streams from the agent as the answer is written; the
	// command's slot and the agent's answer are held until then.
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		defer done()
		defer res.Close()
		writeResultJSON(w, res)
	})
	return nil
}

// serverTiming tells a client where a command's time went on the server
// (the Server-Timing header: the bench's per-step breakdown reads it).
func serverTiming(before time.Duration, t sandbox.ExecTiming) string {
	ms := func(d time.Duration) string { return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 3, 64) }
	return "request;dur=" + ms(before) + ", agent;dur=" + ms(t.Agent) + ", process;dur=" + ms(t.Process) + ", log;dur=" + ms(t.Log)
}

func pathQuery(c *fiber.Ctx) (string, error) {
	p := c.Query("path")
	if p == "" {
		return "", errs.Invalid("query parameter path is required")
	}
	return p, nil
}

func (h *Handlers) readFile(c *fiber.Ctx) error {
	id, err := h.sandboxID(c)
	if err != nil {
		return err
	}
	path, err := pathQuery(c)
	if err != nil {
		return err
	}
	// The agent's answer streams straight to the client: fasthttp copies from
	// the body after the handler returns and closes it at the end.
	f, err := h.sb.ReadFile(c.UserContext(), id, path, c.Get(fiber.HeaderRange))
	if err != nil {
		return err
	}
	// The agent's type is passed on: several ranges come as
	// multipart/byteranges with the boundary in the type.
	ctype := f.ContentType
	if ctype == "" {
		ctype = fiber.MIMEOctetStream
	}
	c.Set(fiber.HeaderContentType, ctype)
	c.Set(fiber.HeaderAcceptRanges, "bytes")
	if f.Mode != "" {
		c.Set("X-File-Mode", f.Mode)
	}
	if f.ContentRange != "" {
		c.Set(fiber.HeaderContentRange, f.ContentRange)
	}
	if f.Partial {
		c.Status(fiber.StatusPartialContent)
	}
	size := int(f.Size)
	if f.Size < 0 {
		size = -1
	}
	c.Context().SetBodyStream(f.Body, size)
	return nil
}

func (h *Handlers) writeFile(c *fiber.Ctx) error {
	id, err := h.sandboxID(c)
	if err != nil {
		return err
	}
	path, err := pathQuery(c)
	if err != nil {
		return err
	}
	size := int64(c.Request().Header.ContentLength())
	if size > h.maxUpload {
		drain(c)
		return errs.TooLarge("upload of %d bytes is over the limit of %d bytes", size, h.maxUpload)
	}
	if size < 0 {
		size = -1 // chunked
	}
	body := &limitReader{r: httpx.BodyReader(c), left: h.maxUpload}
	e, err := h.sb.WriteFile(c.UserContext(), id, path, c.Query("mode"), body, size)
	if body.over {
		drain(c)
		return errs.TooLarge("upload is over the limit of %d bytes", h.maxUpload)
	}
	if err != nil {
		return err
	}
	return c.JSON(e)
}

func (h *Handlers) removeFile(c *fiber.Ctx) error {
	id, err := h.sandboxID(c)
	if err != nil {
		return err
	}
	path, err := pathQuery(c)
	if err != nil {
		return err
	}
	if err := h.sb.Remove(c.UserContext(), id, path); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}

func (h *Handlers) listDir(c *fiber.Ctx) error {
	id, err := h.sandboxID(c)
	if err != nil {
		return err
	}
	path, err := pathQuery(c)
	if err != nil {
		return err
	}
	depth := 1
	if d := c.Query("depth"); d != "" {
		if depth, err = strconv.Atoi(d); err != nil || depth < 1 {
			return errs.Invalid("depth must be a positive integer")
		}
	}
	out, err := h.sb.ListDir(c.UserContext(), id, path, depth)
	if err != nil {
		return err
	}
	return c.JSON(out)
}

func (h *Handlers) stat(c *fiber.Ctx) error {
	id, err := h.sandboxID(c)
	if err != nil {
		return err
	}
	path, err := pathQuery(c)
	if err != nil {
		return err
	}
	e, err := h.sb.Stat(c.UserContext(), id, path)
	if err != nil {
		return err
	}
	return c.JSON(e)
}

func (h *Handlers) makeDir(c *fiber.Ctx) error {
	id, err := h.sandboxID(c)
	if err != nil {
		return err
	}
	path, err := pathQuery(c)
	if err != nil {
		return err
	}
	e, err := h.sb.MakeDir(c.UserContext(), id, path)
	if err != nil {
		return err
	}
	return c.JSON(e)
}

func (h *Handlers) rename(c *fiber.Ctx) error {
	id, err := h.sandboxID(c)
	if err != nil {
		return err
	}
	var req api.RenameRequest
	if err := httpx.ReadJSON(c, &req); err != nil {
		return err
	}
	if req.From == "" || req.To == "" {
		return errs.Invalid("from and to are required")
	}
	e, err := h.sb.Rename(c.UserContext(), id, req.From, req.To)
	if err != nil {
		return err
	}
	return c.JSON(e)
}

// drain reads (a bounded amount of) what is left of a refused upload, so the
// client gets to read the error instead of a connection reset.
func drain(c *fiber.Ctx) {
	io.Copy(io.Discard, io.LimitReader(httpx.BodyReader(c), 64<<20))
}

// limitReader fails once more than left bytes arrive.
type limitReader struct {
	r    io.Reader
	left int64
	over bool
}

func (l *limitReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		l.over = true
		return n, fmt.Errorf("upload over the limit")
	}
	return n, err
}
