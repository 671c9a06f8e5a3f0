package agentclient_test

import (
	"context"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opensandbox/opensandbox/services/shared/agentapi"
	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/worker/internal/agentclient"
	"github.com/opensandbox/opensandbox/services/worker/sandbox"
	"github.com/opensandbox/opensandbox/services/worker/sandboxtest"
)

// A sandbox can write the directory that holds its agent socket. If it swaps
// the socket for a symlink to another sandbox's socket, the worker must not
// end up running its owner's commands in the other sandbox.
func TestSymlinkedSocketIsRefused(t *testing.T) {
	rt := sandboxtest.Runtime(t)
	cfg := sandboxtest.Config(t)
	m := sandboxtest.Manager(t, rt, cfg)
	ctx := context.Background()
	a, err := m.Create(ctx, api.SandboxConfig{}, sandbox.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Create(ctx, api.SandboxConfig{}, sandbox.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sock := func(id string) string { return filepath.Join(cfg.DataDir, "sandboxes", id, "run", agentapi.SocketName) }
	// Inside A: replace its socket with a symlink to B's socket on the host.
	plant := "rm " + agentapi.SocketDir + "/" + agentapi.SocketName + " && ln -s " + sock(b.SandboxID) + " " + agentapi.SocketDir + "/" + agentapi.SocketName
	if res, err := m.Exec(ctx, a.SandboxID, api.ProcessConfig{Cmd: plant}); err != nil || res.ExitCode != 0 {
		t.Fatalf("plant symlink: %v %+v", err, res)
	}

	// The symlink really leads to B: a plain dial of the path gets through.
	followed := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock(a.SandboxID))
	}}}
	resp, err := followed.Get("http://agent/health")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("control: symlink does not reach B: %v", err)
	}
	resp.Body.Close()
	// The worker's client for A follows no link: B's agent is out of reach,
	// and no pid was needed to tell.
	forA := agentclient.New(sock(a.SandboxID))
	defer forA.Close()
	_, err = forA.Exec(ctx, agentapi.ExecRequest{Cmd: "hostname", Shell: true})
	if err == nil || !strings.Contains(err.Error(), "not reachable") {
		t.Fatalf("exec through planted symlink: got %v, want refusal", err)
	}
	// B itself is still served.
	forB := agentclient.New(sock(b.SandboxID))
	defer forB.Close()
	if _, err := forB.Health(ctx); err != nil {
		t.Fatalf("B's own client: %v", err)
	}
}
