package server

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/shared/auth"
	"github.com/opensandbox/opensandbox/services/shared/httpx"
	"github.com/opensandbox/opensandbox/services/shared/obs"
	"github.com/opensandbox/opensandbox/services/worker/httpapi"
	"github.com/opensandbox/opensandbox/services/worker/runtime"
	"github.com/opensandbox/opensandbox/services/worker/sandbox"
	"github.com/prometheus/client_golang/prometheus"
)

// Main loads the configuration, runs the server until ctx ends, then shuts down.
func Main(ctx context.Context) error {
	cfg, err := LoadConfig()
	if err != nil {
		return err
	}
	log := obs.NewLogger(os.Stderr, cfg.LogLevel)
	rt, err := runtime.NewPodman(ctx, cfg.PodmanURI, cfg.OCIRuntime)
	if err != nil {
		return err
	}
	reg := obs.NewRegistry()
	mgr, err := sandbox.New(log, rt, cfg.Sandbox, sandbox.NewMetrics(reg))
	if err != nil {
		return err
	}
	defer mgr.Close()
	if err := mgr.Restore(ctx); err != nil {
		return fmt.Errorf("restore sandboxes: %w", err)
	}
	app := NewCombined(log, reg, mgr, cfg)
	return Serve(ctx, log, app, cfg.Addr, "combined")
}

// NewCombined builds the combined-mode app: the whole REST API, the worker
// in-process, and a static API key when one is configured.
func NewCombined(log *slog.Logger, reg *prometheus.Registry, mgr *sandbox.Manager, cfg Config) *fiber.App {
	app := httpx.NewApp(log, httpx.NewMetrics(reg))
	app.Get("/health", func(c *fiber.Ctx) error {
		return c.JSON(api.Health{Status: "ok", Role: "combined"})
	})
	keyed := app.Group("", auth.StaticKey(cfg.APIKey))
	keyed.Get("/metrics", httpx.MetricsHandler(reg))
	h := httpapi.New(mgr, cfg.MaxUpload)
	h.MountLifecycle(keyed)
	h.MountData(keyed)
	return app
}

// Serve runs app on addr until ctx ends.
func Serve(ctx context.Context, log *slog.Logger, app *fiber.App, addr, role string) error {
	errc := make(chan error, 1)
	go func() { errc <- app.Listen(addr) }()
	log.Info("listening", "addr", addr, "role", role)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	return app.ShutdownWithTimeout(10 * time.Second)
}
