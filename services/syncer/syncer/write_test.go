package syncer

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/opensandbox/opensandbox/services/shared/events"
	"github.com/opensandbox/opensandbox/services/shared/pgschema"
	"github.com/opensandbox/opensandbox/services/shared/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func newPool(t *testing.T) *pgxpool.Pool {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := pgschema.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	return pool
}

func mkRow(t *testing.T, ev events.Event) row {
	ev.ID = events.NewID()
	ev.WorkerID, ev.Region = "w1", "eu"
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	b, err := events.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	ev, err = events.Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return row{ev: ev, raw: b}
}

func count(t *testing.T, pool *pgxpool.Pool, q string, args ...any) int {
	var n int
	if err := pool.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// One sandbox's whole life in one batch, written twice: the second write
// changes nothing, and every table holds what the events say.
func TestWriteBatchDerivesTablesAndIsIdempotent(t *testing.T) {
	pool := newPool(t)
	ctx := context.Background()
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	ended := t0.Add(3 * time.Second)
	rows := []row{
		mkRow(t, events.Event{Type: events.TypeCreated, SandboxID: "sb1", Time: t0, Sandbox: &events.SandboxData{Template: "base", TimeoutS: 60, StartedAt: t0, Metadata: map[string]string{"k": "v"}}}),
		mkRow(t, events.Event{Type: events.TypeCommand, SandboxID: "sb1", Command: &events.CommandData{Command: "ls", Args: []string{"-l", "/"}, Cwd: "/root", ExitCode: 2, DurationMs: 7, StdoutLen: 10, StderrLen: 3}}),
		mkRow(t, events.Event{Type: events.TypeCommand, SandboxID: "sb1", Command: &events.CommandData{Command: "true"}}),
		mkRow(t, events.Event{Type: events.TypePTYStart, SandboxID: "sb1", PTY: &events.PTYData{SessionID: "p1", StartedAt: t0}}),
		mkRow(t, events.Event{Type: events.TypePTYEnd, SandboxID: "sb1", PTY: &events.PTYData{SessionID: "p1", StartedAt: t0, EndedAt: &ended, BytesIn: 5, BytesOut: 99}}),
		mkRow(t, events.Event{Type: events.TypeTimeout, SandboxID: "sb1", Time: ended}),
		mkRow(t, events.Event{Type: events.TypeCreated, SandboxID: "sb2", Sandbox: &events.SandboxData{Template: "busybox", StartedAt: t0}}),
		mkRow(t, events.Event{Type: events.TypeError, SandboxID: "sb2", Error: "container stopped"}),
	}
	for range 2 {
		if err := writeBatch(ctx, pool, rows); err != nil {
			t.Fatal(err)
		}
	}
	if n := count(t, pool, `SELECT count(*) FROM command_logs`); n != 2 {
		t.Fatalf("command_logs: %d rows, want 2", n)
	}
	if n := count(t, pool, `SELECT count(*) FROM command_logs WHERE command = 'ls' AND args = '{-l,/}' AND cwd = '/root' AND exit_code = 2 AND duration_ms = 7 AND stdout_len = 10 AND stderr_len = 3`); n != 1 {
		t.Fatal("command row does not carry the event's fields")
	}
	if n := count(t, pool, `SELECT count(*) FROM sandbox_events`); n != 6 {
		t.Fatalf("sandbox_events: %d rows, want 6 (every non-command event once)", n)
	}
	if n := count(t, pool, `SELECT count(*) FROM pty_session_logs WHERE pty_session_id = 'p1' AND ended_at = $1 AND bytes_in = 5 AND bytes_out = 99`, ended); n != 1 {
		t.Fatal("pty session not folded from its start and end")
	}
	if n := count(t, pool, `SELECT count(*) FROM sandbox_sessions WHERE sandbox_id = 'sb1' AND status = 'stopped' AND stopped_at = $1 AND template = 'base' AND metadata->>'k' = 'v' AND end_at = $2`, ended, t0.Add(time.Minute)); n != 1 {
		t.Fatal("sb1 session not stopped at its timeout with its create data")
	}
	if n := count(t, pool, `SELECT count(*) FROM sandbox_sessions WHERE sandbox_id = 'sb2' AND status = 'error' AND error_msg = 'container stopped'`); n != 1 {
		t.Fatal("sb2 session not in error")
	}
}

// An end that commits before its create (two writers) still ends the session.
func TestWriteBatchEndBeforeCreate(t *testing.T) {
	pool := newPool(t)
	ctx := context.Background()
	created := mkRow(t, events.Event{Type: events.TypeCreated, SandboxID: "sb3", Sandbox: &events.SandboxData{Template: "base"}})
	killed := mkRow(t, events.Event{Type: events.TypeKilled, SandboxID: "sb3"})
	if err := writeBatch(ctx, pool, []row{killed}); err != nil {
		t.Fatal(err)
	}
	if err := writeBatch(ctx, pool, []row{created}); err != nil {
		t.Fatal(err)
	}
	if n := count(t, pool, `SELECT count(*) FROM sandbox_sessions WHERE sandbox_id = 'sb3' AND status = 'stopped'`); n != 1 {
		t.Fatal("session reopened by a late create")
	}
}

// A redelivered command batch mixed with new events: the fast COPY path hits
// the duplicate and the whole batch goes the idempotent way.
func TestWriteBatchRedeliveryMixedWithNew(t *testing.T) {
	pool := newPool(t)
	ctx := context.Background()
	old := mkRow(t, events.Event{Type: events.TypeCommand, SandboxID: "sb4", Command: &events.CommandData{Command: "a"}})
	if err := writeBatch(ctx, pool, []row{old}); err != nil {
		t.Fatal(err)
	}
	fresh := mkRow(t, events.Event{Type: events.TypeCommand, SandboxID: "sb4", Command: &events.CommandData{Command: "b"}})
	if err := writeBatch(ctx, pool, []row{fresh, old}); err != nil {
		t.Fatal(err)
	}
	if n := count(t, pool, `SELECT count(*) FROM command_logs WHERE sandbox_id = 'sb4'`); n != 2 {
		t.Fatalf("command_logs: %d rows, want 2", n)
	}
}

func TestPermanentErrors(t *testing.T) {
	pool := newPool(t)
	ctx := context.Background()
	bad := mkRow(t, events.Event{Type: events.TypeCreated, SandboxID: "sb5", OrgID: "0b0e9d4e-0000-4000-8000-000000000000", Sandbox: &events.SandboxData{Template: "x"}})
	err := writeBatch(ctx, pool, []row{bad}) // an org that does not exist: a foreign key violation
	if err == nil || !permanent(err) {
		t.Fatalf("want a permanent error, got %v", err)
	}
}
