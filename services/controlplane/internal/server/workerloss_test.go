package server

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opensandbox/opensandbox/services/controlplane/internal/sessions"
	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/worker/sandbox"
	"github.com/opensandbox/opensandbox/services/worker/sandboxtest"
)

var (
	workerBinOnce sync.Once
	workerBin     string
	workerBinErr  error
)

// workerBinary builds the real opensandbox-worker once per test binary.
func workerBinary(t *testing.T) string {
	t.Helper()
	workerBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "osbw-")
		if err != nil {
			workerBinErr = err
			return
		}
		workerBin = filepath.Join(dir, "opensandbox-worker")
		cmd := exec.Command("go", "build", "-trimpath", "-o", workerBin, "github.com/opensandbox/opensandbox/services/worker")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0",
			"GOFLAGS=-tags=remote,containers_image_openpgp,exclude_graphdriver_btrfs,exclude_graphdriver_devicemapper")
		if out, err := cmd.CombinedOutput(); err != nil {
			workerBinErr = fmt.Errorf("%w: %s", err, out)
		}
	})
	if workerBinErr != nil {
		t.Fatalf("build the worker: %v", workerBinErr)
	}
	return workerBin
}

func freePort(t *testing.T) string {
	t.Helper()
	ln := listen(t)
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// startWorkerProcess runs the real worker binary in region eu against the
// cluster (extra variables override); the process is killed at cleanup if
// it still runs.
func startWorkerProcess(t *testing.T, c *testCluster, bin, id, dataDir, httpPort, grpcPort string, extra ...string) *exec.Cmd {
	t.Helper()
	var logs bytes.Buffer
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(),
		"NATS_URL="+c.nats,
		"OPENSANDBOX_JWT_SECRET="+testJWTSecret,
		"OPENSANDBOX_WORKER_SECRET="+testWorkerSecret,
		"OPENSANDBOX_HOST=127.0.0.1",
		"OPENSANDBOX_PORT="+httpPort,
		"OPENSANDBOX_GRPC_PORT="+grpcPort,
		"OPENSANDBOX_WORKER_ID="+id,
		"OPENSANDBOX_REGION=eu",
		"OPENSANDBOX_DATA_DIR="+dataDir,
		"OPENSANDBOX_AGENT_BINARY="+sandboxtest.AgentBinary(t),
		"OPENSANDBOX_PODMAN_URI="+sandboxtest.PodmanURI(),
		"OPENSANDBOX_DEFAULT_TEMPLATE=busybox",
		"OPENSANDBOX_HEARTBEAT_INTERVAL=5s",
	)
	cmd.Env = append(cmd.Env, extra...)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		if t.Failed() {
			t.Logf("worker output:\n%s", logs.String())
		}
	})
	return cmd
}

// killedWorkerDir is the data directory of a worker process the test
// kills: the worker cannot clean up, so the test removes its containers
// (labelled with its id) and the directory at the end.
func killedWorkerDir(t *testing.T, id string) string {
	dataDir, err := os.MkdirTemp("", "osbk")
	if err != nil {
		t.Fatal(err)
	}
	rt := sandboxtest.Runtime(t)
	t.Cleanup(func() {
		ctx := context.Background()
		left, _ := rt.List(ctx, map[string]string{sandbox.LabelWorker: id})
		for _, ctr := range left {
			rt.Remove(ctx, ctr.Name)
		}
		sandboxtest.ExpectNoContainers(t, rt, id)
		sandboxtest.RemoveDataDir(dataDir)
	})
	return dataDir
}

// A real worker process killed with SIGKILL is dropped from the registry
// within 20 s (three missed 5 s beats) and its sessions turn error.
func TestWorkerKilledIsDroppedAndSessionsFail(t *testing.T) {
	c := startCluster(t, nil)
	bin := workerBinary(t)
	id := "kill-" + sandboxtest.RandomID()
	dataDir := killedWorkerDir(t, id)
	cmd := startWorkerProcess(t, c, bin, id, dataDir, freePort(t), freePort(t))
	c.waitWorker(t, id, true)

	var ids []string
	for range 2 {
		var sb api.Sandbox
		c.cp.json(t, "POST", "/sandboxes", api.SandboxConfig{TemplateID: "busybox"}, 201, &sb)
		if sb.WorkerID != id {
			t.Fatalf("placed on %s", sb.WorkerID)
		}
		ids = append(ids, sb.SandboxID)
	}

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	killed := time.Now()
	c.waitWorker(t, id, false)
	if d := time.Since(killed); d > 20*time.Second {
		t.Fatalf("worker dropped %s after SIGKILL, want within 20s", d)
	} else {
		t.Logf("worker dropped %s after SIGKILL", d.Round(100*time.Millisecond))
	}
	var rows []sessions.Row
	c.cp.json(t, "GET", "/sessions?status=error", nil, 200, &rows)
	if len(rows) != 2 {
		t.Fatalf("error sessions %+v", rows)
	}
	for _, r := range rows {
		if !strings.Contains(r.ErrorMsg, id+" lost") || r.StoppedAt == nil || (r.SandboxID != ids[0] && r.SandboxID != ids[1]) {
			t.Fatalf("session %+v", r)
		}
	}
	resp, body := c.cp.do(t, "GET", "/sandboxes/"+ids[0], nil)
	wantError(t, resp, body, 404, "sandbox_not_found")
	if n := counter(t, c.reg, "opensandbox_workers_lost_total", nil); n != 1 {
		t.Fatalf("workers lost %v", n)
	}
}
