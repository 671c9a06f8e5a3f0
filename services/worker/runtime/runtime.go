// Package runtime runs sandboxes as containers. Runtime is the small interface
// the sandbox manager needs; Podman is the implementation used today, with room
// for a microVM runtime behind the same interface.
package runtime

import (
	"context"
	"errors"
	"io"
	"time"
)

// Mount is a host path bound into the sandbox.
type Mount struct {
	Source      string
	Destination string
	ReadOnly    bool
	// TmpfsBytes > 0 makes Source, an empty host directory, a tmpfs of at
	// most that many bytes owned by the sandbox's root before the sandbox
	// starts: a bounded writable directory the host can also reach.
	TmpfsBytes int64
}

// Spec describes one sandbox container.
type Spec struct {
	Name        string
	Image       string
	Cmd         []string
	Env         map[string]string
	Labels      map[string]string
	Mounts      []Mount
	CPUs        float64
	MemoryBytes int64
	PidsLimit   int64
	Network     bool     // bridge network; none when false
	CapAdd      []string // all other capabilities are dropped

	// SeccompProfile is the path of a seccomp profile (JSON) on the
	// runtime's host; "" keeps the runtime's default.
	SeccompProfile string
	// DiskBytes bounds the sandbox's writable root file system; 0 leaves
	// it unbounded.
	DiskBytes int64
	// StateDir is a host directory of this sandbox alone, where the runtime
	// may keep the sandbox's disk. Unmount(StateDir) after Remove releases
	// what the runtime mounted there.
	StateDir string
}

// Container is what the runtime knows about one container.
type Container struct {
	ID      string
	Name    string
	Labels  map[string]string
	Running bool
	PID     int // host pid of the container's init process (our agent)
	Created time.Time
}

// ErrNotFound is returned for an unknown container or image.
var ErrNotFound = errors.New("not found")

// ErrUnavailable is returned when the runtime's service cannot be reached
// (e.g. while it restarts): worth retrying, unlike its refusals.
var ErrUnavailable = errors.New("container runtime not reachable")

// Runtime creates, inspects and removes sandbox containers.
type Runtime interface {
	// Start creates and starts a container.
	Start(ctx context.Context, spec Spec) (Container, error)
	// Remove force-removes a container; a missing one is not an error.
	Remove(ctx context.Context, name string) error
	// Inspect returns one container or ErrNotFound.
	Inspect(ctx context.Context, name string) (Container, error)
	// List returns the containers carrying all the given labels.
	List(ctx context.Context, labels map[string]string) ([]Container, error)
	// ImageExists reports whether an image is present locally.
	ImageExists(ctx context.Context, ref string) (bool, error)
	// Pull fetches an image from its registry, also when it is local,
	// writing progress lines to progress; insecure skips TLS verification
	// (local registries).
	Pull(ctx context.Context, ref string, insecure bool, progress io.Writer) error
	// RemoveImage removes a local image that no container uses; a missing
	// one is not an error.
	RemoveImage(ctx context.Context, ref string) error
	// ImageSize is the size of a local image on disk, in bytes.
	ImageSize(ctx context.Context, ref string) (int64, error)
}
