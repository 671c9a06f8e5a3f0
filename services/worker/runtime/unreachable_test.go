package runtime_test

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/opensandbox/opensandbox/services/worker/runtime"
	"github.com/opensandbox/opensandbox/services/worker/sandboxtest"
)

// While the Podman service is down (it restarts), a create is "unavailable"
// — not "image not found" — and a removal fails rather than pass for done:
// taking the missing socket for a missing container once leaked a running
// container for good.
func TestPodmanDownIsUnavailableNotNotFound(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "podman.sock")
	svc := exec.Command("podman", "system", "service", "--time=0", "unix://"+sock)
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var p *runtime.Podman
	deadline := time.Now().Add(30 * time.Second)
	for {
		var err error
		if p, err = runtime.NewPodman(ctx, "unix://"+sock, ""); err == nil {
			break
		}
		if time.Now().After(deadline) {
			svc.Process.Kill()
			t.Fatalf("podman service did not come up: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Control: with the service up, a missing container is "not found", and
	// removing it is done.
	if _, err := p.Inspect(ctx, "osb-no-such-"+sandboxtest.RandomID()); !errors.Is(err, runtime.ErrNotFound) {
		t.Fatalf("inspect of a missing container with the service up: %v, want ErrNotFound", err)
	}
	if err := p.Remove(ctx, "osb-no-such-"+sandboxtest.RandomID()); err != nil {
		t.Fatalf("remove of a missing container: %v", err)
	}
	svc.Process.Kill()
	svc.Wait()

	_, err := p.Start(ctx, runtime.Spec{Name: "osb-down-" + sandboxtest.RandomID(), Image: "localhost/opensandbox/busybox:latest", Cmd: []string{"/bin/true"}})
	if !errors.Is(err, runtime.ErrUnavailable) || errors.Is(err, runtime.ErrNotFound) {
		t.Fatalf("start with the service down: %v, want ErrUnavailable", err)
	}
	if err := p.Remove(ctx, "osb-some-"+sandboxtest.RandomID()); err == nil {
		t.Fatal("remove with the service down passed for done")
	}
	if _, err := p.Inspect(ctx, "osb-some-"+sandboxtest.RandomID()); errors.Is(err, runtime.ErrNotFound) {
		t.Fatal("inspect with the service down said not found")
	}
}
