package server

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/shared/pgtest"
	"github.com/opensandbox/opensandbox/services/worker/sandboxtest"
)

// The combined mode as `make run-pg` runs it: its sandboxes' events go
// through the embedded JetStream and the in-process syncer into PostgreSQL,
// and /health shows both sides of the pipeline.
func TestCombinedModeEventsReachPostgres(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	ln := listen(t)
	addr := ln.Addr().String()
	ln.Close()
	cfg := Config{
		Mode: ModeCombined, Addr: addr, APIKey: "static-key", MaxUpload: 1 << 30,
		PodmanURI: sandboxtest.PodmanURI(), Sandbox: sandboxtest.Config(t),
		DatabaseURL: dsn, Migrate: true, RunSyncer: true,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runCombined(ctx, sandboxtest.Logger(t), cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runCombined: %v", err)
		}
		sandboxtest.ExpectNoContainers(t, sandboxtest.Runtime(t), cfg.Sandbox.WorkerID)
	})
	s := &stack{url: "http://" + addr, key: cfg.APIKey}
	sandboxtest.Eventually(t, 30*time.Second, "server up", func() bool {
		resp, err := http.Get(s.url + "/health")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})

	var sb api.Sandbox
	s.json(t, "POST", "/sandboxes", api.SandboxConfig{TemplateID: "busybox"}, 201, &sb)
	s.json(t, "POST", "/sandboxes/"+sb.SandboxID+"/commands", api.ProcessConfig{Cmd: "echo hi"}, 200, nil)
	s.json(t, "DELETE", "/sandboxes/"+sb.SandboxID, nil, 204, nil)

	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	count := func(q string) int {
		var n int
		if err := conn.QueryRow(context.Background(), q, sb.SandboxID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	sandboxtest.Eventually(t, 20*time.Second, "events in PostgreSQL", func() bool {
		return count(`SELECT count(*) FROM command_logs WHERE sandbox_id = $1 AND command = 'echo hi'`) == 1 &&
			count(`SELECT count(*) FROM sandbox_events WHERE sandbox_id = $1 AND type IN ('created', 'killed')`) == 2
	})
	if n := count(`SELECT count(*) FROM sandbox_sessions WHERE sandbox_id = $1 AND status = 'stopped'`); n != 1 {
		t.Fatalf("session not stopped (%d rows)", n)
	}

	var h struct {
		Status string
		Events struct {
			Publisher struct{ Published uint64 }
			Syncer    struct {
				OK      bool
				Written uint64
			}
		}
	}
	resp, body := s.do(t, "GET", "/health", nil)
	if resp.StatusCode != 200 || json.Unmarshal(body, &h) != nil {
		t.Fatalf("health: %d %s", resp.StatusCode, body)
	}
	if h.Status != "ok" || h.Events.Publisher.Published < 3 || h.Events.Syncer.Written < 3 || !h.Events.Syncer.OK {
		t.Fatalf("health lacks the pipeline: %s", body)
	}
}
