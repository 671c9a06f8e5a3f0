package server

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/opensandbox/opensandbox/services/controlplane/internal/autoscaler"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/sessions"
	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/worker/sandbox"
	"github.com/opensandbox/opensandbox/services/worker/sandboxtest"
)

type autoscalerAnswer struct {
	Enabled bool                     `json:"enabled"`
	Regions []autoscaler.RegionState `json:"regions"`
}

// The autoscaler with the local pool, for real: it starts a worker process
// (the minimum), loading it past 70 % with real sandboxes starts a second
// one that takes the next placement; when load falls under 30 % the
// least-loaded worker is drained and stopped only after its last sandbox
// ended by its own timeout. No sandbox ends early: every session is stopped
// by its timeout or by our kill, none errored.
func TestAutoscalerLocalPoolForReal(t *testing.T) {
	rt := sandboxtest.Runtime(t)
	dir, err := os.MkdirTemp("", "osbas")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	t.Cleanup(func() {
		ctx := context.Background()
		for id := range seen {
			left, _ := rt.List(ctx, map[string]string{sandbox.LabelWorker: id})
			for _, ctr := range left {
				rt.Remove(ctx, ctr.Name)
			}
		}
		os.RemoveAll(dir)
	})
	c := startCluster(t, func(cfg *Config) {
		cfg.RunSyncer = true // timeout and kill events close the sessions
		cfg.Autoscaler = AutoscalerConfig{
			Pool: "local", Regions: []string{"eu"}, LocalBinary: workerBinary(t), LocalDir: dir,
			LocalEnv: append(os.Environ(),
				"OPENSANDBOX_JWT_SECRET="+testJWTSecret, "OPENSANDBOX_WORKER_SECRET="+testWorkerSecret,
				"OPENSANDBOX_AGENT_BINARY="+sandboxtest.AgentBinary(t), "OPENSANDBOX_PODMAN_URI="+sandboxtest.PodmanURI(),
				"OPENSANDBOX_DEFAULT_TEMPLATE=busybox", "OPENSANDBOX_HEARTBEAT_INTERVAL=200ms", "OPENSANDBOX_CAPACITY=4"),
			Scaler: autoscaler.Config{Interval: 200 * time.Millisecond, Sustain: time.Nanosecond, UpCooldown: 4 * time.Second,
				DownCooldown: time.Nanosecond, Min: 1, Max: 2, DrainDeadline: 5 * time.Minute},
		}
	})
	workers := func() []string {
		var ws []map[string]any
		c.admin.json(t, "GET", "/workers", nil, 200, &ws)
		var ids []string
		for _, w := range ws {
			id := w["worker_id"].(string)
			seen[id] = true
			ids = append(ids, id)
		}
		return ids
	}
	state := func() autoscaler.RegionState {
		var a autoscalerAnswer
		c.admin.json(t, "GET", "/autoscaler", nil, 200, &a)
		if !a.Enabled || len(a.Regions) != 1 {
			t.Fatalf("GET /autoscaler: %+v", a)
		}
		return a.Regions[0]
	}
	resp, body := c.cp.do(t, "GET", "/autoscaler", nil)
	wantError(t, resp, body, 403, "insufficient_scope")

	pollUntil(t, 60*time.Second, "the minimum's worker", func() bool { return len(workers()) == 1 })
	first := workers()[0]
	create := func(timeout int) api.Sandbox {
		var sb api.Sandbox
		c.cp.json(t, "POST", "/sandboxes", api.SandboxConfig{TemplateID: "busybox", Timeout: timeout}, 201, &sb)
		return sb
	}
	short1, killed, long1 := create(10), create(600), create(25) // 3/4 = 75 % on the first worker
	for _, sb := range []api.Sandbox{short1, killed, long1} {
		if sb.WorkerID != first {
			t.Fatalf("placed on %s before a second worker exists", sb.WorkerID)
		}
	}
	upAt := time.Now()
	pollUntil(t, 60*time.Second, "a second worker", func() bool {
		if time.Since(upAt) > 10*time.Second {
			st := state()
			t.Logf("state %+v last %+v", st, st.LastDecision)
		}
		return len(workers()) == 2
	})
	t.Logf("75 %% load -> second worker serving: %s", time.Since(upAt).Round(time.Millisecond))
	var second string
	for _, id := range workers() {
		if id != first {
			second = id
		}
	}
	long2 := create(25)
	if long2.WorkerID != second {
		t.Fatalf("the new worker did not take the placement: %s", long2.WorkerID)
	}

	// Load falls: one timeout, one kill -> 2/8 = 25 %. One worker drains
	// while its sandbox still runs, and goes only once that one ended.
	c.cp.json(t, "DELETE", "/sandboxes/"+killed.SandboxID, nil, 204, nil)
	var drained autoscaler.Machine
	pollUntil(t, 30*time.Second, "a worker draining", func() bool {
		for _, m := range state().Machines {
			if m.State == autoscaler.StateDraining {
				drained = m
				return true
			}
		}
		return false
	})
	var running []sessions.Row
	c.cp.json(t, "GET", "/sessions?status=running", nil, 200, &running)
	busy := false
	for _, r := range running {
		busy = busy || r.WorkerID == drained.WorkerID
	}
	if !busy {
		t.Fatalf("drained %s has no running sandbox: the test proves nothing (%+v)", drained.WorkerID, running)
	}
	pollUntil(t, 60*time.Second, "the drained worker stopped", func() bool {
		ids := workers()
		return len(ids) == 1 && ids[0] != drained.WorkerID
	})
	st := state()
	if st.LastDecision == nil || st.LastDecision.Direction != "terminate" || !st.Leader || len(st.Machines) != 1 {
		t.Fatalf("autoscaler state %+v (last %+v)", st, st.LastDecision)
	}

	// Every sandbox ended by its own timeout or our kill; none errored.
	var rows []sessions.Row
	deadline := time.Now().Add(40 * time.Second)
	for {
		rows = nil
		c.cp.json(t, "GET", "/sessions?status=stopped", nil, 200, &rows)
		if len(rows) == 4 {
			break
		}
		if time.Now().After(deadline) {
			var all []sessions.Row
			c.cp.json(t, "GET", "/sessions", nil, 200, &all)
			for _, r := range all {
				t.Logf("session %s worker %s status %s end %v stopped %v err %q", r.SandboxID, r.WorkerID, r.Status, r.EndAt, r.StoppedAt, r.ErrorMsg)
			}
			t.Fatal("the sessions did not all end")
		}
		time.Sleep(250 * time.Millisecond)
	}
	var errored []sessions.Row
	c.cp.json(t, "GET", "/sessions?status=error", nil, 200, &errored)
	if len(errored) != 0 {
		t.Fatalf("sessions ended in error: %+v", errored)
	}
	for _, r := range rows {
		if r.SandboxID == killed.SandboxID {
			continue
		}
		if r.EndAt == nil || r.StoppedAt == nil || r.StoppedAt.Before(r.EndAt.Add(-time.Second)) {
			t.Fatalf("sandbox %s ended at %v before its timeout %v", r.SandboxID, r.StoppedAt, r.EndAt)
		}
	}
	for dir, want := range map[string]float64{"up": 2, "drain": 1, "terminate": 1} {
		if got := counter(t, c.reg, "opensandbox_autoscaler_decisions_total", map[string]string{"region": "eu", "direction": dir}); got != want {
			t.Fatalf("decisions %s = %v, want %v", dir, got, want)
		}
	}
	if !strings.HasPrefix(drained.ID, "local-eu-") {
		t.Fatalf("machine id %q", drained.ID)
	}
}
