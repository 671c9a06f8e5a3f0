// Package sandbox manages the lifecycle of sandboxes on one worker: creating
// them through a Runtime, talking to their agents, enforcing their end time
// (also across restarts), and logging to each sandbox's SQLite.
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"strings"
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

	// A template that names an image reference is pulled, for the org that
	// names it, from PullRegistries only: exact registries (host[:port]),
	// or "*" for any whose host resolves to public addresses only; empty,
	// nothing is pulled. InsecureRegistries skip TLS verification (a local
	// registry). An org starts only from images it pulled itself, of named
	// templates, or of PublicImages (references the operator shares with
	// every org); any other org pulls again. No image over PullMaxBytes is
	// kept.
	PullRegistries     []string
	InsecureRegistries []string
	PublicImages       []string
	PullMaxBytes       int64
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
	// Disk limit of a sandbox's root file system (DiskMB on create).
	DefaultDiskMB int
	MaxDiskMB     int
	MinDiskMB     int
	PidsLimit     int64
	Capacity      int // sandboxes this worker accepts at once

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
		DefaultDiskMB:      10240,
		MaxDiskMB:          102400,
		MinDiskMB:          32,
		PidsLimit:          256,
		Capacity:           200,
		PullTimeout:        5 * time.Minute,
		PullMaxBytes:       10 << 30,
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
	case c.DefaultDiskMB < c.MinDiskMB || c.MaxDiskMB < c.DefaultDiskMB || c.MinDiskMB < 16:
		return errors.New("disk: need 16 <= min <= default <= max")
	case c.Capacity <= 0:
		return errors.New("capacity must be positive")
	case c.PullTimeout <= 0:
		return errors.New("pull timeout must be positive")
	case c.PullMaxBytes <= 0:
		return errors.New("OPENSANDBOX_PULL_MAX_BYTES must be positive")
	case c.ImageGCAfter < 0:
		return errors.New("image GC age must not be negative")
	case c.MaxExecs <= 0:
		return errors.New("max execs must be positive")
	case c.MaxOutput <= 0 || c.MaxOutput > 64<<20:
		return errors.New("max output must be between 1 byte and 64 MiB")
	case c.MaxSandboxStreams <= 0 || c.MaxStreams < c.MaxSandboxStreams:
		return errors.New("streams: need 0 < per sandbox <= per worker")
	case c.ReconcileInterval <= 0:
		return errors.New("reconcile interval must be positive")
	}
	for _, img := range c.PublicImages {
		if _, err := normalizeImage(img); err != nil {
			return fmt.Errorf("OPENSANDBOX_PUBLIC_IMAGES: %q is not an image reference", img)
		}
	}
	for _, reg := range c.PullRegistries {
		if reg != AnyPublicRegistry && (reg == "" || strings.ContainsAny(reg, "/*") || strings.HasPrefix(reg, "http")) {
			return fmt.Errorf("OPENSANDBOX_PULL_REGISTRIES: %q is not a registry (host[:port], or * for any public one)", reg)
		}
	}
	return nil
}
