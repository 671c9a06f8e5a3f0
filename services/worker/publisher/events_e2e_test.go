package publisher

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/worker/sandbox"
	"github.com/opensandbox/opensandbox/services/worker/sandboxtest"
)

// Every event type a real worker records — created, command, pty_start,
// pty_end, killed, timeout, error — reaches PostgreSQL exactly once, the
// derived tables say what happened, and retired sandbox directories go once
// their events are out.
func TestEveryEventTypeLandsOnce(t *testing.T) {
	p := newPipeline(t)
	p.startSyncer()
	p.startPublisher()
	rt := sandboxtest.Runtime(t)
	cfg := sandboxtest.Config(t)
	cfg.DataDir = p.dataDir
	cfg.RetainEvents = true
	cfg.OnEvent = p.pub.Notify
	ctx := context.Background()

	m1 := sandboxtest.Manager(t, rt, cfg)
	create := func(m *sandbox.Manager, c api.SandboxConfig) string {
		sb, err := m.Create(ctx, c, sandbox.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return sb.SandboxID
	}
	// a: created, 2 commands, a terminal session, killed.
	a := create(m1, api.SandboxConfig{})
	for _, cmd := range []string{"echo one", "exit 3"} {
		if _, err := m1.Exec(ctx, a, api.ProcessConfig{Cmd: cmd}); err != nil {
			t.Fatal(err)
		}
	}
	ps, err := m1.CreatePTY(ctx, a, api.PTYConfig{})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := m1.AttachPTY(ctx, a, ps.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte("exit 0\n"))
	io.ReadAll(conn)
	conn.Close()
	p.eventually(10*time.Second, "pty session ended", `SELECT count(*) FROM sandbox_events WHERE type = 'pty_end'`, 1)
	if err := m1.Kill(ctx, a); err != nil {
		t.Fatal(err)
	}
	// b: created, destroyed at its timeout.
	b := create(m1, api.SandboxConfig{Timeout: 1})
	// c: created; its container vanishes while the worker is down: error.
	c := create(m1, api.SandboxConfig{})
	p.eventually(15*time.Second, "b timed out", `SELECT count(*) FROM sandbox_events WHERE type = 'timeout'`, 1)
	m1.Close()
	if err := rt.Remove(ctx, "osb-"+c); err != nil {
		t.Fatal(err)
	}
	sandboxtest.Manager(t, rt, cfg) // restart: finds c's directory without a container

	// 2 commands in command_logs; created x3, pty_start, pty_end, killed,
	// timeout, error in sandbox_events.
	p.waitRows(2+8, 30*time.Second)
	for q, want := range map[string]int{
		`SELECT count(*) FROM command_logs WHERE sandbox_id = '` + a + `'`:                                                             2,
		`SELECT count(*) FROM sandbox_events WHERE type = 'created'`:                                                                   3,
		`SELECT count(*) FROM pty_session_logs WHERE sandbox_id = '` + a + `' AND ended_at IS NOT NULL AND bytes_in = 7`:               1,
		`SELECT count(*) FROM sandbox_sessions WHERE sandbox_id = '` + a + `' AND status = 'stopped'`:                                  1,
		`SELECT count(*) FROM sandbox_sessions WHERE sandbox_id = '` + b + `' AND status = 'stopped'`:                                  1,
		`SELECT count(*) FROM sandbox_sessions WHERE sandbox_id = '` + c + `' AND status = 'error' AND error_msg LIKE '%disappeared%'`: 1,
	} {
		if got := p.count(q); got != want {
			t.Errorf("%s = %d, want %d", q, got, want)
		}
	}
	// Retired directories are removed once published.
	deadline := time.Now().Add(10 * time.Second)
	for {
		left, _ := os.ReadDir(filepath.Join(p.dataDir, "sandboxes"))
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("retired sandbox directories left: %v", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
