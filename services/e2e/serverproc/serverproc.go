// Package serverproc builds and runs the opensandbox-server binary as a child
// process, in combined mode on a free port with a data directory of its own,
// so that tests and the soak can stop, kill and restart it like an operator.
package serverproc

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// buildTags are the tags the Podman bindings need to build without C
// libraries (the Makefile's GOFLAGS).
const buildTags = "remote,containers_image_openpgp,exclude_graphdriver_btrfs,exclude_graphdriver_devicemapper"

// RepoRoot is the directory of go.work.
func RepoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOWORK").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOWORK: %w", err)
	}
	gowork := strings.TrimSpace(string(out))
	if gowork == "" || gowork == "off" {
		return "", errors.New("not inside the repository's go.work")
	}
	return filepath.Dir(gowork), nil
}

// Binaries are the programs a server needs.
type Binaries struct {
	Server, Agent string
}

// Build compiles opensandbox-server and osb-agent into dir. It also points
// this process's podman commands at the checkout's own image store, as the
// Makefile does, when the caller has not chosen one.
func Build(dir string) (Binaries, error) {
	root, err := RepoRoot()
	if err != nil {
		return Binaries{}, err
	}
	if conf := filepath.Join(root, ".data", "containers", "storage.conf"); os.Getenv("CONTAINERS_STORAGE_CONF") == "" {
		if _, err := os.Stat(conf); err == nil {
			os.Setenv("CONTAINERS_STORAGE_CONF", conf)
		}
	}
	b := Binaries{Server: filepath.Join(dir, "opensandbox-server"), Agent: filepath.Join(dir, "osb-agent")}
	for out, pkg := range map[string]string{b.Server: "./services/controlplane", b.Agent: "./services/agent"} {
		cmd := exec.Command("go", "build", "-tags", buildTags, "-trimpath", "-o", out, pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
		if msg, err := cmd.CombinedOutput(); err != nil {
			return Binaries{}, fmt.Errorf("go build %s: %w\n%s", pkg, err, msg)
		}
	}
	return b, nil
}

// PodmanURI is $OPENSANDBOX_PODMAN_URI, else the socket `make bootstrap`
// starts in the repository.
func PodmanURI() string {
	if u := os.Getenv("OPENSANDBOX_PODMAN_URI"); u != "" {
		return u
	}
	root, _ := RepoRoot()
	return "unix://" + filepath.Join(root, ".data", "run", "podman.sock")
}

// Server is a combined server process. Its data directory and port stay the
// same across restarts, as for an operator restarting the service.
type Server struct {
	URL      string
	APIKey   string
	WorkerID string
	DataDir  string
	LogPath  string
	bins     Binaries
	env      []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Options configure a server; Env adds OPENSANDBOX_* settings.
type Options struct {
	Dir string   // holds the data directory and the log
	Env []string // KEY=VALUE, after the defaults
}

// Start runs a server and waits until it answers /health.
func Start(ctx context.Context, bins Binaries, opts Options) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &Server{
		URL:      "http://127.0.0.1:" + strconv.Itoa(port),
		APIKey:   "key-" + randomHex(12),
		WorkerID: "e2e-" + randomHex(4),
		DataDir:  filepath.Join(opts.Dir, "data"),
		LogPath:  filepath.Join(opts.Dir, "server.log"),
		bins:     bins,
	}
	s.env = append(os.Environ(),
		"OPENSANDBOX_MODE=combined",
		"OPENSANDBOX_PORT="+strconv.Itoa(port),
		"OPENSANDBOX_DATA_DIR="+s.DataDir,
		"OPENSANDBOX_WORKER_ID="+s.WorkerID,
		"OPENSANDBOX_API_KEY="+s.APIKey,
		"OPENSANDBOX_PODMAN_URI="+PodmanURI(),
		"OPENSANDBOX_AGENT_BINARY="+bins.Agent,
	)
	s.env = append(s.env, opts.Env...)
	if err := s.Restart(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Restart starts the process again (after Stop or Kill) and waits for /health.
func (s *Server) Restart(ctx context.Context) error {
	log, err := os.OpenFile(s.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bins.Server)
	cmd.Env = s.env
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); log.Close(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	return s.waitHealthy(ctx, done)
}

func (s *Server) waitHealthy(ctx context.Context, done <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/health", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-done:
			return fmt.Errorf("server exited before it was healthy:\n%s", s.LogTail(30))
		case <-ctx.Done():
			return fmt.Errorf("server not healthy: %w\n%s", ctx.Err(), s.LogTail(30))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// PID is the server process's pid (0 when not running).
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Kill sends SIGKILL and waits for the process to be gone.
func (s *Server) Kill() { s.signal(syscall.SIGKILL, 0) }

// Stop sends SIGTERM and waits up to a minute for a clean shutdown.
func (s *Server) Stop() { s.signal(syscall.SIGTERM, time.Minute) }

func (s *Server) signal(sig syscall.Signal, grace time.Duration) {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(sig)
	if grace > 0 {
		select {
		case <-done:
			return
		case <-time.After(grace):
			cmd.Process.Kill()
		}
	}
	<-done
}

// LogTail returns the last n lines of the server's log.
func (s *Server) LogTail(n int) string { return s.logLines(n, nil) }

// Problems returns the last n lines of the server's log that are not at
// level INFO or DEBUG: warnings, errors and anything not structured.
func (s *Server) Problems(n int) string {
	return s.logLines(n, func(l []byte) bool {
		return !bytes.Contains(l, []byte(`"level":"INFO"`)) && !bytes.Contains(l, []byte(`"level":"DEBUG"`))
	})
}

func (s *Server) logLines(n int, keep func([]byte) bool) string {
	b, _ := os.ReadFile(s.LogPath)
	var lines [][]byte
	for _, l := range bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n")) {
		if keep == nil || keep(l) {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// RSS is the server's resident memory in bytes, read from /proc.
func (s *Server) RSS() (int64, error) {
	pid := s.PID()
	if pid == 0 {
		return 0, errors.New("server not running")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", pid))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, fmt.Errorf("statm: %q", b)
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize()), err
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
