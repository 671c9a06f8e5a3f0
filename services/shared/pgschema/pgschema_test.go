package pgschema

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/opensandbox/opensandbox/services/shared/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func newPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func TestMigrationsAreNumbered(t *testing.T) {
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 || ms[0].Version != 1 || Latest() != len(ms) {
		t.Fatalf("migrations %+v, latest %d", ms, Latest())
	}
}

func TestMigrateEmptyDatabaseThenCheck(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool := newPool(t)
	if err := Check(ctx, pool); !errors.Is(err, ErrBehind) {
		t.Fatalf("check of an empty database: %v, want ErrBehind", err)
	}
	// Concurrent migrations (two control planes starting) apply each step once.
	var wg sync.WaitGroup
	results := make([][]int, 3)
	errs := make([]error, 3)
	for i := range results {
		wg.Go(func() { results[i], errs[i] = Migrate(ctx, pool) })
	}
	wg.Wait()
	total := 0
	for i := range results {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		total += len(results[i])
	}
	if total != Latest() {
		t.Fatalf("applied %d migrations across concurrent calls, want %d: %v", total, Latest(), results)
	}
	if err := Check(ctx, pool); err != nil {
		t.Fatalf("check after migrate: %v", err)
	}
	for _, table := range []string{"orgs", "users", "api_keys", "sandbox_sessions", "command_logs", "pty_session_logs", "workers", "templates"} {
		var ok bool
		if err := pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, table).Scan(&ok); err != nil || !ok {
			t.Errorf("table %s missing (%v)", table, err)
		}
	}
	// The syncer's idempotency rests on these unique keys.
	exec := func(sql string, args ...any) error { _, err := pool.Exec(ctx, sql, args...); return err }
	cmd := `INSERT INTO command_logs (event_id, sandbox_id, command, exit_code, duration_ms, stdout_len, stderr_len, created_at)
		VALUES ('ev1', 'sb1', 'true', 0, 1, 0, 0, now()) ON CONFLICT (event_id) DO NOTHING`
	pty := `INSERT INTO pty_session_logs (sandbox_id, pty_session_id, started_at) VALUES ('sb1', 'p1', now())
		ON CONFLICT (pty_session_id) DO UPDATE SET bytes_out = 7`
	sess := `INSERT INTO sandbox_sessions (sandbox_id, template, region, worker_id) VALUES ('sb1', 'base', 'local', 'w1')
		ON CONFLICT (sandbox_id) DO NOTHING`
	for _, q := range []string{cmd, cmd, pty, pty, sess, sess} {
		if err := exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var n int
	pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM command_logs) + (SELECT count(*) FROM pty_session_logs) + (SELECT count(*) FROM sandbox_sessions)`).Scan(&n)
	if n != 3 {
		t.Fatalf("%d rows after duplicate inserts, want 3", n)
	}
	if err := exec(`INSERT INTO command_logs (sandbox_id, command, exit_code, duration_ms, created_at) VALUES ('sb1', 'x', 0, 1, now())`); err == nil {
		t.Fatal("command_logs accepted a row without event_id")
	}
	if done, err := Migrate(ctx, pool); err != nil || len(done) != 0 {
		t.Fatalf("second migrate: %v %v", done, err)
	}
}

func TestCheckRefusesOlderSchema(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool := newPool(t)
	// A database migrated by an older release: the version table exists but
	// lacks the newest migration.
	if _, err := Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `DELETE FROM schema_migrations WHERE version = $1`, Latest()); err != nil {
		t.Fatal(err)
	}
	err := Check(ctx, pool)
	if !errors.Is(err, ErrBehind) {
		t.Fatalf("check of an older schema: %v, want ErrBehind", err)
	}
	t.Log(err)
	// A version newer than this binary knows is accepted.
	if _, err := pool.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, 'x'), ($2, 'future')`, Latest(), Latest()+1); err != nil {
		t.Fatal(err)
	}
	if err := Check(ctx, pool); err != nil {
		t.Fatalf("check of a newer schema: %v", err)
	}
}
