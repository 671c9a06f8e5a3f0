package httpapi

import (
	"context"
	"io"

	"github.com/gofiber/fiber/v2"
	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/shared/auth"
	"github.com/opensandbox/opensandbox/services/worker/sandbox"
)

// Interactive is what the streaming routes need: processes that stream or
// outlive the request, terminals and file watches. It is separate from
// Sandboxes so that implementations without it keep working; MountData adds
// these routes only when the Sandboxes value also implements Interactive.
type Interactive interface {
	StreamProcess(ctx context.Context, id string, p api.ProcessConfig) (*sandbox.ProcessStream, error)
	StartProcess(ctx context.Context, id string, p api.ProcessConfig) (api.ProcessStarted, error)
	Processes(ctx context.Context, id string) ([]api.ProcessInfo, error)
	ConnectProcess(ctx context.Context, id string, pid int) (*sandbox.ProcessStream, error)
	WriteStdin(ctx context.Context, id string, pid int, r io.Reader) error
	CloseStdin(ctx context.Context, id string, pid int) error
	SignalProcess(ctx context.Context, id string, pid int, signal string) error
	KillProcess(ctx context.Context, id string, pid int) error

	CreatePTY(ctx context.Context, id string, cfg api.PTYConfig) (api.PTYSession, error)
	PTYExists(ctx context.Context, id, sessionID string) error
	AttachPTY(ctx context.Context, id, sessionID string) (*sandbox.PTYConn, error)
	ResizePTY(ctx context.Context, id, sessionID string, cols, rows int) error
	KillPTY(ctx context.Context, id, sessionID string) error

	WatchDir(ctx context.Context, id, path string, recursive bool) (*sandbox.Watch, error)
}

var _ Interactive = (*sandbox.Manager)(nil)

// mountInteractive adds the process, terminal and watch routes. Only the
// list of processes is a read; streams, watches and terminals are
// long-lived and hold the sandbox's and the worker's resources, so they
// need the full scope like everything that changes something.
func (h *Handlers) mountInteractive(r fiber.Router) {
	full := auth.RequireFull
	r.Get("/sandboxes/:id/files/watch", full, h.watchFiles)

	r.Get("/sandboxes/:id/processes", h.listProcesses)
	r.Get("/sandboxes/:id/processes/:pid/stream", full, h.connectProcess)
	r.Post("/sandboxes/:id/processes/:pid/stdin", full, h.writeStdin)
	r.Delete("/sandboxes/:id/processes/:pid/stdin", full, h.closeStdin)
	r.Post("/sandboxes/:id/processes/:pid/signal", full, h.signalProcess)
	r.Delete("/sandboxes/:id/processes/:pid", full, h.killProcess)

	r.Post("/sandboxes/:id/pty", full, h.createPTY)
	r.Get("/sandboxes/:id/pty/:sessionID", full, h.beforeUpgrade, h.ptySocket())
	r.Post("/sandboxes/:id/pty/:sessionID/resize", full, h.resizePTY)
	r.Delete("/sandboxes/:id/pty/:sessionID", full, h.killPTY)
}
