package syncer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/opensandbox/opensandbox/services/shared/events"
)

// row is one decoded event ready for PostgreSQL, with its encoded form for
// the dead-letter subject.
type row struct {
	ev  events.Event
	raw []byte
}

// Command events are copied straight into command_logs; when that hits an
// event already written (a redelivery), and for every other event, the batch
// goes to a temporary table with COPY and then into the real tables with one
// statement each, each idempotent on its key: nothing is written twice.
const (
	// Command events (the bulk) arrive as typed columns, so PostgreSQL parses
	// no JSON for them; other events carry their payload.
	createIncoming = `CREATE TEMP TABLE IF NOT EXISTS incoming_events (
		event_id text, type text, sandbox_id text, org_id text, worker_id text, region text, occurred_at timestamptz,
		command text, args text[], cwd text, exit_code int, duration_ms bigint, stdout_len bigint, stderr_len bigint,
		payload jsonb
	) ON COMMIT DELETE ROWS`

	// Command events live in command_logs (below); every other event here.
	insertEvents = `INSERT INTO sandbox_events (event_id, type, sandbox_id, org_id, worker_id, region, occurred_at, payload)
		SELECT event_id, type, sandbox_id, NULLIF(org_id, ''), worker_id, region, occurred_at, payload
		FROM incoming_events WHERE type <> 'command'
		ON CONFLICT (event_id) DO NOTHING`

	insertCommands = `INSERT INTO command_logs (event_id, sandbox_id, command, args, cwd, exit_code, duration_ms, stdout_len, stderr_len, created_at)
		SELECT event_id, sandbox_id, command, args, cwd, exit_code, duration_ms, stdout_len, stderr_len, occurred_at
		FROM incoming_events WHERE type = 'command'
		ON CONFLICT (event_id) DO NOTHING`

	// A start and its end may share a batch: fold them per session first.
	upsertPTY = `INSERT INTO pty_session_logs (sandbox_id, pty_session_id, started_at, ended_at, bytes_in, bytes_out)
		SELECT min(sandbox_id), payload->'pty'->>'sessionID',
			min((payload->'pty'->>'startedAt')::timestamptz),
			max((payload->'pty'->>'endedAt')::timestamptz),
			max(COALESCE((payload->'pty'->>'bytesIn')::bigint, 0)),
			max(COALESCE((payload->'pty'->>'bytesOut')::bigint, 0))
		FROM incoming_events WHERE type IN ('pty_start', 'pty_end')
		GROUP BY payload->'pty'->>'sessionID'
		ON CONFLICT (pty_session_id) DO UPDATE SET
			started_at = LEAST(pty_session_logs.started_at, EXCLUDED.started_at),
			ended_at   = COALESCE(EXCLUDED.ended_at, pty_session_logs.ended_at),
			bytes_in   = GREATEST(pty_session_logs.bytes_in, EXCLUDED.bytes_in),
			bytes_out  = GREATEST(pty_session_logs.bytes_out, EXCLUDED.bytes_out)`

	// The worker publishes `created` before its gRPC reply reaches the
	// control plane, so this often inserts the session row before the
	// control plane commits its create: the control plane's commit then
	// merges into this row (store.Commit: INSERT ... ON CONFLICT DO UPDATE,
	// keeping an end recorded here). It also covers sandboxes the control
	// plane never recorded. A row the control plane wrote first is left as
	// it is.
	insertSessions = `INSERT INTO sandbox_sessions (sandbox_id, org_id, template, region, worker_id, status, metadata, started_at, end_at)
		SELECT DISTINCT ON (sandbox_id) sandbox_id,
			CASE WHEN org_id ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN org_id::uuid END,
			COALESCE(payload->'sandbox'->>'template', ''), region, worker_id, 'running',
			COALESCE(payload->'sandbox'->'metadata', '{}'),
			COALESCE((payload->'sandbox'->>'startedAt')::timestamptz, occurred_at),
			COALESCE((payload->'sandbox'->>'startedAt')::timestamptz, occurred_at) + make_interval(secs => COALESCE((payload->'sandbox'->>'timeoutS')::int, 0))
		FROM incoming_events WHERE type = 'created'
		ON CONFLICT (sandbox_id) DO NOTHING`

	// Only a running session changes state: a repeated end event is a no-op,
	// and an end that commits before its create leaves the row ended.
	endSessions = `INSERT INTO sandbox_sessions (sandbox_id, template, region, worker_id, status, stopped_at, error_msg, started_at)
		SELECT DISTINCT ON (sandbox_id) sandbox_id, '', region, worker_id,
			CASE WHEN type = 'error' THEN 'error' ELSE 'stopped' END, occurred_at,
			CASE WHEN type = 'error' THEN payload->>'error' END, occurred_at
		FROM incoming_events WHERE type IN ('killed', 'timeout', 'error')
		ORDER BY sandbox_id, occurred_at
		ON CONFLICT (sandbox_id) DO UPDATE SET status = EXCLUDED.status, stopped_at = EXCLUDED.stopped_at, error_msg = EXCLUDED.error_msg
		WHERE sandbox_sessions.status = 'running'`
)

var incomingColumns = []string{"event_id", "type", "sandbox_id", "org_id", "worker_id", "region", "occurred_at",
	"command", "args", "cwd", "exit_code", "duration_ms", "stdout_len", "stderr_len", "payload"}

// values returns r as one row of incoming_events.
func (r row) values() []any {
	ev := r.ev
	v := []any{ev.ID, ev.Type, ev.SandboxID, ev.OrgID, ev.WorkerID, ev.Region, ev.Time, nil, nil, nil, nil, nil, nil, nil, nil}
	if c := ev.Command; ev.Type == events.TypeCommand && c != nil {
		args := c.Args
		if args == nil {
			args = []string{}
		}
		v[7], v[8], v[9], v[10], v[11], v[12], v[13] = c.Command, args, c.Cwd, c.ExitCode, c.DurationMs, int64(c.StdoutLen), int64(c.StderrLen)
	} else {
		payload, _ := json.Marshal(r.ev) // the rare events: JSON for the jsonb column
		v[14] = string(payload)
	}
	return v
}

// writeBatch writes rows in one transaction.
func writeBatch(ctx context.Context, pool *pgxpool.Pool, rows []row) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var cmds, rest []row
	for _, r := range rows {
		if r.ev.Type == events.TypeCommand && r.ev.Command != nil {
			cmds = append(cmds, r)
		} else {
			rest = append(rest, r)
		}
	}
	if len(cmds) > 0 {
		copied, err := copyCommands(ctx, tx, cmds)
		if err != nil {
			return err
		}
		if !copied {
			rest = append(rest, cmds...)
		}
	}
	if len(rest) > 0 {
		if err := writeIdempotent(ctx, tx, rest); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

var commandColumns = []string{"event_id", "sandbox_id", "command", "args", "cwd", "exit_code", "duration_ms", "stdout_len", "stderr_len", "created_at"}

// copyCommands is the fast path for the bulk of events: COPY straight into
// command_logs. A redelivered event makes it fail on the primary key; then it
// rolls back to its savepoint and reports false, and the caller writes those
// rows through the idempotent path instead.
func copyCommands(ctx context.Context, tx pgx.Tx, cmds []row) (bool, error) {
	if _, err := tx.Exec(ctx, "SAVEPOINT copy_commands"); err != nil {
		return false, err
	}
	// One reused row of values: this runs for nearly every event.
	next, v := 0, make([]any, len(commandColumns))
	src := pgx.CopyFromFunc(func() ([]any, error) {
		if next == len(cmds) {
			return nil, nil
		}
		ev := cmds[next].ev
		c := ev.Command
		next++
		args := c.Args
		if args == nil {
			args = []string{}
		}
		v[0], v[1], v[2], v[3], v[4] = ev.ID, ev.SandboxID, c.Command, args, c.Cwd
		v[5], v[6], v[7], v[8], v[9] = c.ExitCode, c.DurationMs, int64(c.StdoutLen), int64(c.StderrLen), ev.Time
		return v, nil
	})
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"command_logs"}, commandColumns, src)
	var pg *pgconn.PgError
	if errors.As(err, &pg) && pg.Code == "23505" { // unique_violation
		_, err = tx.Exec(ctx, "ROLLBACK TO SAVEPOINT copy_commands")
		return false, err
	}
	return err == nil, err
}

// writeIdempotent writes rows through a temporary table with statements that
// are each idempotent on their key.
func writeIdempotent(ctx context.Context, tx pgx.Tx, rows []row) error {
	if _, err := tx.Exec(ctx, createIncoming); err != nil {
		return err
	}
	src := make([][]any, len(rows))
	for i, r := range rows {
		src[i] = r.values()
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"incoming_events"}, incomingColumns, pgx.CopyFromRows(src)); err != nil {
		return fmt.Errorf("copy events: %w", err)
	}
	for _, q := range statementsFor(rows) {
		if _, err := tx.Exec(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// statementsFor returns the statements a batch needs: most batches are only
// command events and skip the rest.
func statementsFor(rows []row) []string {
	var cmd, pty, created, ended, other bool
	for _, r := range rows {
		switch r.ev.Type {
		case events.TypeCommand:
			cmd = true
			continue
		case events.TypePTYStart, events.TypePTYEnd:
			pty = true
		case events.TypeCreated:
			created = true
		case events.TypeKilled, events.TypeTimeout, events.TypeError:
			ended = true
		}
		other = true
	}
	var qs []string
	for _, s := range []struct {
		need bool
		q    string
	}{{other, insertEvents}, {cmd, insertCommands}, {pty, upsertPTY}, {created, insertSessions}, {ended, endSessions}} {
		if s.need {
			qs = append(qs, s.q)
		}
	}
	return qs
}

// permanent reports an error that retrying the same data cannot fix: bad
// data or a violated constraint. Everything else (connection refused, server
// shutting down) is worth waiting out.
func permanent(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		switch pg.Code[:2] {
		case "22", "23": // data exception, integrity constraint violation
			return true
		}
	}
	return false
}
