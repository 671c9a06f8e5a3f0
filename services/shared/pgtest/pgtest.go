// Package pgtest starts a real PostgreSQL server for tests: initdb and pg_ctl
// into a temporary directory on a free port, one fresh database per test.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// BinDir holds the PostgreSQL binaries; $PG_BIN overrides it.
func BinDir() string {
	if d := os.Getenv("PG_BIN"); d != "" {
		return d
	}
	for _, v := range []string{"17", "16", "15"} {
		d := "/usr/lib/postgresql/" + v + "/bin"
		if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err == nil {
			return d
		}
	}
	return "/usr/lib/postgresql/15/bin"
}

// Server is a running PostgreSQL instance.
type Server struct {
	dir  string
	Port int
	mu   sync.Mutex
	stop bool
}

// Start runs initdb and pg_ctl start. As root, PostgreSQL runs as the
// postgres user (it refuses to run as root).
func Start() (*Server, error) {
	dir, err := os.MkdirTemp("", "osbpg")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir, Port: port}
	if err := s.run("initdb", "-D", s.data(), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200", port, dir)
	if err := s.run("pg_ctl", "-D", s.data(), "-o", opts, "-l", filepath.Join(dir, "log"), "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		os.RemoveAll(dir)
		return nil, fmt.Errorf("%w\n%s", err, log)
	}
	return s, nil
}

func (s *Server) data() string { return filepath.Join(s.dir, "data") }

func (s *Server) run(name string, args ...string) error {
	cmd := exec.Command(filepath.Join(BinDir(), name), args...)
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fmt.Errorf("running as root needs a postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(s.dir, uid, gid); err != nil {
			return err
		}
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", filepath.Join(BinDir(), name)}, args...)...)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", name, err, out)
	}
	return nil
}

// DSN returns a connection string for database db.
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.Port, db)
}

// CreateDatabase makes a fresh, empty database and returns its DSN.
func (s *Server) CreateDatabase(ctx context.Context) (string, error) {
	var b [6]byte
	rand.Read(b[:])
	name := "t_" + hex.EncodeToString(b[:])
	conn, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", err
	}
	return s.DSN(name), nil
}

// Stop shuts the server down immediately and removes its files.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stop {
		return
	}
	s.stop = true
	s.run("pg_ctl", "-D", s.data(), "-m", "immediate", "-w", "stop")
	os.RemoveAll(s.dir)
}

// StopForFault stops the server but keeps its data and port
// (fault tests: "PostgreSQL down for a while").
func (s *Server) StopForFault() error {
	return s.run("pg_ctl", "-D", s.data(), "-m", "fast", "-w", "stop")
}

// StartAfterFault starts a server stopped by StopForFault again.
func (s *Server) StartAfterFault() error {
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200", s.Port, s.dir)
	return s.run("pg_ctl", "-D", s.data(), "-o", opts, "-l", filepath.Join(s.dir, "log"), "-w", "-t", "60", "start")
}

var (
	shared     *Server
	sharedErr  error
	sharedOnce sync.Once
)

// Shared returns one server per test binary; call StopShared from TestMain.
func Shared() (*Server, error) {
	sharedOnce.Do(func() { shared, sharedErr = Start() })
	return shared, sharedErr
}

// StopShared stops the server Shared started, if any.
func StopShared() {
	if shared != nil {
		shared.Stop()
	}
}

// Main runs a package's tests and then stops the shared server, for
// TestMain: func TestMain(m *testing.M) { pgtest.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	StopShared()
	os.Exit(code)
}

// NewDatabase returns the DSN of a fresh database on the shared server, or
// fails the test with what is missing.
func NewDatabase(t testing.TB) string {
	t.Helper()
	s, err := Shared()
	if err != nil {
		t.Fatalf("PostgreSQL for tests (binaries in %s; apt-get install postgresql): %v", BinDir(), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dsn, err := s.CreateDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return dsn
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Quote is a tiny identifier check for names built by tests.
func Quote(id string) string { return `"` + strings.ReplaceAll(id, `"`, `""`) + `"` }
