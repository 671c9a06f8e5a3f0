// Package sandboxtest gives tests a real sandbox manager on the project's
// Podman service, and checks that every test leaves no container behind.
package sandboxtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/opensandbox/opensandbox/services/worker/runtime"
	"github.com/opensandbox/opensandbox/services/worker/sandbox"
	"github.com/prometheus/client_golang/prometheus"
)

// init points the podman command, which some tests run, at the store of the
// service tests use (`make bootstrap` writes it; `make test` exports it too).
func init() {
	if os.Getenv("CONTAINERS_STORAGE_CONF") != "" {
		return
	}
	if conf := filepath.Join(repoRoot(), ".data", "containers", "storage.conf"); fileExists(conf) {
		os.Setenv("CONTAINERS_STORAGE_CONF", conf)
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// PodmanURI is the Podman service tests use: $OPENSANDBOX_PODMAN_URI, else
// the socket `make bootstrap` starts in the repository.
func PodmanURI() string {
	if u := os.Getenv("OPENSANDBOX_PODMAN_URI"); u != "" {
		return u
	}
	return "unix://" + filepath.Join(repoRoot(), ".data", "run", "podman.sock")
}

func repoRoot() string {
	out, err := exec.Command("go", "env", "GOWORK").Output()
	if err == nil && len(out) > 1 {
		return filepath.Dir(string(out[:len(out)-1]))
	}
	wd, _ := os.Getwd()
	return wd
}

// Runtime connects to the Podman service or fails the test with a hint.
func Runtime(t testing.TB) *runtime.Podman {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rt, err := runtime.NewPodman(ctx, PodmanURI(), os.Getenv("OPENSANDBOX_OCI_RUNTIME"))
	if err != nil {
		t.Fatalf("Podman service not reachable (%v); run `make bootstrap` first", err)
	}
	return rt
}

var (
	agentOnce sync.Once
	agentPath string
	agentErr  error
)

// AgentBinary returns $OPENSANDBOX_AGENT_BINARY, or builds the agent once.
func AgentBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("OPENSANDBOX_AGENT_BINARY"); p != "" {
		return p
	}
	agentOnce.Do(func() {
		dir, err := os.MkdirTemp("", "osb-agent-")
		if err != nil {
			agentErr = err
			return
		}
		agentPath = filepath.Join(dir, "osb-agent")
		cmd := exec.Command("go", "build", "-o", agentPath, "github.com/opensandbox/opensandbox/services/agent")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			agentErr = err
			agentPath = string(out)
		}
	})
	if agentErr != nil {
		t.Fatalf("build agent: %v\n%s", agentErr, agentPath)
	}
	return agentPath
}

// RandomID returns a short random hex string.
func RandomID() string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Config returns a manager configuration for tests: its own worker id and a
// short data directory (unix socket paths are limited to 108 bytes).
func Config(t testing.TB) sandbox.Config {
	t.Helper()
	cfg := sandbox.DefaultConfig()
	cfg.WorkerID = "test-" + RandomID()
	dir, err := os.MkdirTemp("", "osb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { RemoveDataDir(dir) })
	cfg.DataDir = dir
	cfg.AgentBinary = AgentBinary(t)
	cfg.DefaultTemplate = "busybox"
	return cfg
}

// RemoveDataDir removes a worker's data directory, unmounting first the
// sandbox disks and run directories a worker that could not clean up (one
// killed, or closed with sandboxes left) leaves mounted in it: removing
// through them would only empty them and leak their mounts.
func RemoveDataDir(dir string) error {
	if err := runtime.Unmount(dir); err != nil {
		return err
	}
	return os.RemoveAll(dir)
}

// Logger returns a logger that writes to the test log only when -v is set.
func Logger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// Manager starts a manager for cfg. At cleanup it destroys the manager's
// sandboxes and fails the test if any container of this worker remains.
func Manager(t testing.TB, rt runtime.Runtime, cfg sandbox.Config) *sandbox.Manager {
	t.Helper()
	m, err := sandbox.New(Logger(t), rt, cfg, sandbox.NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Restore(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		for _, sb := range m.List(ctx, "") {
			m.Kill(ctx, sb.SandboxID)
		}
		m.Close()
		ExpectNoContainers(t, rt, cfg.WorkerID)
	})
	return m
}

// ExpectNoContainers fails the test if containers of workerID exist, and removes them.
func ExpectNoContainers(t testing.TB, rt runtime.Runtime, workerID string) {
	t.Helper()
	ctx := context.Background()
	left, err := rt.List(ctx, map[string]string{sandbox.LabelWorker: workerID})
	if err != nil {
		t.Errorf("list containers: %v", err)
		return
	}
	for _, c := range left {
		t.Errorf("container %s of worker %s was left behind", c.Name, workerID)
		rt.Remove(ctx, c.Name)
	}
}

// Eventually polls cond until it holds, failing the test when within passes.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within %s", what, within)
		}
		time.Sleep(25 * time.Millisecond)
	}
}
