package server

import (
	"context"
	"testing"
	"time"

	"github.com/opensandbox/opensandbox/services/controlplane/internal/sessions"
	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/shared/natsx"
	"github.com/opensandbox/opensandbox/services/shared/proto/workerv1"
	"google.golang.org/protobuf/proto"
)

// A worker that shuts down beats "draining" until it is gone; one dropped as
// lost and then back reconciles its sessions: a sandbox still running there
// is running again, one gone while it was away stays ended, and a session
// the control plane had as running but the worker does not hold is stopped.
func TestWorkerBackAfterDropRevivesItsSessions(t *testing.T) {
	c := startCluster(t, func(cfg *Config) { cfg.StaleAfter = 2 * time.Second })
	w := c.startWorker(t, workerOpts{region: "eu"})

	var alive, killed api.Sandbox
	c.cp.json(t, "POST", "/sandboxes", api.SandboxConfig{TemplateID: "busybox"}, 201, &alive)
	c.cp.json(t, "POST", "/sandboxes", api.SandboxConfig{TemplateID: "busybox"}, 201, &killed)

	beats, err := c.nc.SubscribeSync(natsx.HeartbeatSubject("eu", w.id))
	if err != nil {
		t.Fatal(err)
	}
	c.nc.Flush()
	w.stop() // the process goes; its sandboxes keep running (Podman holds them)
	draining := false
	for !draining {
		m, err := beats.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("no draining heartbeat while the worker shut down: %v", err)
		}
		var hb workerv1.Heartbeat
		if err := proto.Unmarshal(m.Data, &hb); err != nil {
			t.Fatal(err)
		}
		draining = hb.GetDraining()
	}
	beats.Unsubscribe()
	c.waitWorker(t, w.id, false)
	var rows []sessions.Row
	c.cp.json(t, "GET", "/sessions?status=error", nil, 200, &rows)
	if len(rows) != 2 {
		t.Fatalf("sessions of the dropped worker: %+v", rows)
	}

	// While it is away: one sandbox ends, and the control plane holds a
	// running session for a sandbox the worker never had.
	if err := w.mgr.Kill(context.Background(), killed.SandboxID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.st.Pool().Exec(context.Background(), `INSERT INTO sandbox_sessions (sandbox_id, org_id, template, region, worker_id, status, started_at)
		VALUES ('ghost', $1, 'busybox', 'eu', $2, 'running', now() - interval '1 minute')`, c.org.ID, w.id); err != nil {
		t.Fatal(err)
	}

	c.startWorker(t, workerOpts{region: "eu", mgr: w.mgr}) // the same worker, restarted
	status := func(id string) sessions.Row {
		var all []sessions.Row
		c.cp.json(t, "GET", "/sessions", nil, 200, &all)
		for _, r := range all {
			if r.SandboxID == id {
				return r
			}
		}
		t.Fatalf("no session %s", id)
		return sessions.Row{}
	}
	pollUntil(t, 20*time.Second, "the live sandbox's session running again", func() bool {
		r := status(alive.SandboxID)
		return r.Status == api.StatusRunning && r.ErrorMsg == "" && r.StoppedAt == nil
	})
	pollUntil(t, 10*time.Second, "the ghost session stopped", func() bool { return status("ghost").Status == api.StatusStopped })
	if r := status(killed.SandboxID); r.Status != api.StatusError {
		t.Fatalf("the sandbox that ended while the worker was away: %+v", r)
	}
	// And the revived sandbox is reachable again through the control plane.
	var got api.Sandbox
	c.cp.json(t, "GET", "/sandboxes/"+alive.SandboxID, nil, 200, &got)
	if got.Token == "" || got.ConnectURL == "" {
		t.Fatalf("revived sandbox: %+v", got)
	}
}
