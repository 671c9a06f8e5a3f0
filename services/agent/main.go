// Command osb-agent runs as PID 1 inside every sandbox. It reaps orphans,
// forwards signals to the processes it started, and serves the worker over a
// unix socket in a host directory mounted into this sandbox only.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/opensandbox/opensandbox/services/agent/internal/proc"
	"github.com/opensandbox/opensandbox/services/agent/internal/server"
	"github.com/opensandbox/opensandbox/services/shared/agentapi"
)

var version = "dev"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "osb-agent:", err)
		os.Exit(1)
	}
}

func run() error {
	socket := flag.String("socket", agentapi.SocketDir+"/"+agentapi.SocketName, "unix socket to serve on")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// Not dumpable: the sandbox's processes run as the same (namespaced)
	// root as we do, and would otherwise read or write our memory through
	// /proc/1/mem or take our file descriptors; children get the flag back
	// at exec.
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_DUMPABLE, 0, 0); errno != 0 {
		return fmt.Errorf("prctl(PR_SET_DUMPABLE): %w", errno)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reaper := proc.NewReaper()
	go reaper.Reap(ctx)

	os.Remove(*socket)
	ln, err := net.Listen("unix", *socket)
	if err != nil {
		return err
	}
	api := server.New(log, reaper, version)
	// The collector works harder before the heap outgrows what commands'
	// output may hold: the agent must not be what fills its sandbox.
	debug.SetMemoryLimit(server.OutputBudget(api.MemoryLimit()) + 64<<20)
	srv := &http.Server{Handler: api.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)

	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	for sig := range sigs {
		s := sig.(syscall.Signal)
		forward(reaper, s)
		if s == syscall.SIGTERM || s == syscall.SIGINT {
			return shutdown(srv, reaper)
		}
	}
	return nil
}

// forward passes a signal to the process group of every process we started.
func forward(r *proc.Reaper, sig syscall.Signal) {
	for _, pid := range r.Running() {
		if err := syscall.Kill(-pid, sig); errors.Is(err, syscall.ESRCH) {
			syscall.Kill(pid, sig)
		}
	}
}

// shutdown gives children a moment to exit after SIGTERM, then returns; as
// PID 1 our exit ends the sandbox and the kernel kills whatever is left.
func shutdown(srv *http.Server, r *proc.Reaper) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
	for len(r.Running()) > 0 && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}
