// Package sandbox manages the lifecycle of sandboxes on one worker: creating
// them through a Runtime, talking to their agents, enforcing their end time
// (also across restarts), and logging to each sandbox's SQLite.
package sandbox

import (
	"context"
	"errors"
	"time"
)

// Config is the manager's configuration.
type Config struct {
	WorkerID    string
	Region      string
	DataDir     string // holds sandboxes/<id>/{sandbox.db,run/}
	AgentBinary string // host path of the static osb-agent binary

	Templates       map[string]string // template name -> image reference
	DefaultTemplate string

	// A template that names an image reference is pulled when missing, from
	// PullRegistries only when that list is set; InsecureRegistries skip TLS
	// verification (a local registry).
	PullRegistries     []string
	InsecureRegistries []string
	PullTimeout        time.Duration
	// ImageGCAfter removes a pulled image no sandbox started from for this
	// long (0: never). Built-in template images are never removed.
	ImageGCAfter time.Duration

	DefaultTimeout time.Duration
	MaxTimeout     time.Duration
	DefaultCPUs    int
	MaxCPUs        int
	DefaultMemMB   int
	MaxMemMB       int
	MinMemMB       int
	PidsLimit      int64
	Capacity       int // sandboxes this worker accepts at once

	// RetainEvents keeps a destroyed sandbox's directory (marked retired)
	// until the event publisher has sent its events and removes it.
	RetainEvents bool
	// OnEvent, when set, is called after an event is recorded (the publisher's
	// Notify); it must not block.
	OnEvent func(sandboxID string)
	// OnDestroy, when set, is called once a sandbox is gone (reason killed,
	// timeout or error), before Kill returns; the control plane's session
	// tracking marks the sandbox stopped with it.
	OnDestroy func(ctx context.Context, sandboxID, reason string)

	DefaultExecTimeout time.Duration
	MaxExecTimeout     time.Duration
	MaxOutput          int // bytes kept per output stream
	MaxExecs           int // plain commands running at once in one sandbox; more get 429
	// Long-lived connections (streamed runs, process streams, terminals,
	// file watches) open at once, per sandbox and on the whole worker;
	// more get 429 too_many_connections.
	MaxSandboxStreams int
	MaxStreams        int
	AgentReadyTimeout time.Duration // how long a new sandbox's agent may take to answer

	// ReconcileInterval is how often the manager compares its sandboxes with
	// the runtime's containers: a sandbox whose container died is destroyed
	// (reason error), and removals that failed are retried.
	ReconcileInterval time.Duration
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		WorkerID:        "local",
		Region:          "local",
		DataDir:         ".data",
		DefaultTemplate: "base",
		Templates: map[string]string{
			"base":    "localhost/opensandbox/base:latest",
			"busybox": "localhost/opensandbox/busybox:latest",
		},
		DefaultTimeout:     300 * time.Second,
		MaxTimeout:         24 * time.Hour,
		DefaultCPUs:        1,
		MaxCPUs:            4,
		DefaultMemMB:       512,
		MaxMemMB:           8192,
		MinMemMB:           64,
		PidsLimit:          256,
		Capacity:           200,
		PullTimeout:        5 * time.Minute,
		ImageGCAfter:       24 * time.Hour,
		DefaultExecTimeout: 60 * time.Second,
		MaxExecTimeout:     24 * time.Hour,
		MaxOutput:          10 << 20,
		MaxExecs:           16,
		MaxSandboxStreams:  64,
		MaxStreams:         4096,
		AgentReadyTimeout:  15 * time.Second,
		ReconcileInterval:  5 * time.Second,
	}
}

// Validate checks the configuration is usable.
func (c Config) Validate() error {
	switch {
	case c.WorkerID == "":
		return errors.New("worker id is required")
	case c.DataDir == "":
		return errors.New("data dir is required")
	case c.AgentBinary == "":
		return errors.New("agent binary is required")
	case c.DefaultTimeout <= 0 || c.MaxTimeout < c.DefaultTimeout:
		return errors.New("timeouts: need 0 < default <= max")
	case c.DefaultCPUs <= 0 || c.MaxCPUs < c.DefaultCPUs:
		return errors.New("cpus: need 0 < default <= max")
	case c.DefaultMemMB < c.MinMemMB || c.MaxMemMB < c.DefaultMemMB:
		return errors.New("memory: need min <= default <= max")
	case c.Capacity <= 0:
		return errors.New("capacity must be positive")
	case c.PullTimeout <= 0:
		return errors.New("pull timeout must be positive")
	case c.ImageGCAfter < 0:
		return errors.New("image GC age must not be negative")
	case c.MaxExecs <= 0:
		return errors.New("max execs must be positive")
	case c.MaxSandboxStreams <= 0 || c.MaxStreams < c.MaxSandboxStreams:
		return errors.New("streams: need 0 < per sandbox <= per worker")
	case c.ReconcileInterval <= 0:
		return errors.New("reconcile interval must be positive")
	}
	return nil
}
