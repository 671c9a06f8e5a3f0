package agentclient

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// serveHealth serves a stand-in agent's /health on a unix socket at path.
func serveHealth(t *testing.T, path, who string) {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"status":"ok","version":"` + who + `"}`))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// Without Podman or pids: a socket in its directory is reached; a symlink
// planted in that directory (to another sandbox's socket, or to a regular
// file) reaches nothing, and neither does a symlinked directory.
func TestDialFollowsNoLink(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"a", "b"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	serveHealth(t, filepath.Join(root, "b", "agent.sock"), "b")
	ctx := context.Background()
	h, err := New(filepath.Join(root, "b", "agent.sock")).Health(ctx)
	if err != nil || h.Version != "b" {
		t.Fatalf("own socket: %+v %v", h, err)
	}

	if err := os.Symlink(filepath.Join(root, "b", "agent.sock"), filepath.Join(root, "a", "agent.sock")); err != nil {
		t.Fatal(err)
	}
	if _, err := New(filepath.Join(root, "a", "agent.sock")).Health(ctx); err == nil || !strings.Contains(err.Error(), "not reachable") {
		t.Fatalf("through a symlink to b: %v", err)
	}
	if _, err := dialAgent(ctx, filepath.Join(root, "a", "agent.sock")); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("dial through a symlink: %v", err)
	}
	os.Remove(filepath.Join(root, "a", "agent.sock"))
	os.WriteFile(filepath.Join(root, "a", "agent.sock"), []byte("x"), 0o600)
	if _, err := dialAgent(ctx, filepath.Join(root, "a", "agent.sock")); err == nil {
		t.Fatal("dialled a regular file")
	}
	// The run directory itself must not be a link either.
	if err := os.Symlink(filepath.Join(root, "b"), filepath.Join(root, "c")); err != nil {
		t.Fatal(err)
	}
	if _, err := dialAgent(ctx, filepath.Join(root, "c", "agent.sock")); err == nil {
		t.Fatal("dialled through a symlinked directory")
	}
}

// The connection goes through /proc/self/fd, so a socket path longer than
// sun_path's 108 bytes works too.
func TestDialLongPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 100))
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "agent.sock")
	// Bind through a short relative path: the listener itself cannot take
	// the long one.
	wd, _ := os.Getwd()
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	serveHealth(t, "agent.sock", "long")
	os.Chdir(wd)
	if h, err := New(sock).Health(context.Background()); err != nil || h.Version != "long" {
		t.Fatalf("long path (%d bytes): %+v %v", len(sock), h, err)
	}
}
