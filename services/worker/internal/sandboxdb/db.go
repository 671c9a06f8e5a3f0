// Package sandboxdb is the per-sandbox SQLite log: command history, events
// waiting to be published, and the sandbox's own state (end time) so that it
// survives a worker restart.
package sandboxdb

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	_ "modernc.org/sqlite" // pure Go: the worker builds with CGO off
)

const schema = `
CREATE TABLE IF NOT EXISTS meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS command_log (
	id          INTEGER PRIMARY KEY,
	command     TEXT NOT NULL,
	args        TEXT NOT NULL,
	cwd         TEXT NOT NULL,
	exit_code   INTEGER NOT NULL,
	duration_ms INTEGER NOT NULL,
	stdout_len  INTEGER NOT NULL,
	stderr_len  INTEGER NOT NULL,
	created_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
	seq        INTEGER PRIMARY KEY,
	event_id   TEXT NOT NULL UNIQUE,
	type       TEXT NOT NULL,
	payload    BLOB NOT NULL, -- events.Marshal (protobuf); JSON in rows of earlier versions
	created_at TEXT NOT NULL,
	synced     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS events_unsynced ON events(seq) WHERE synced = 0;
`

// timeLayout is how times are stored: UTC with all nine fractional digits,
// so that text order is time order (min, ORDER BY). RFC3339Nano trims
// trailing zeros ("…:05Z" sorts after "…:05.1Z"); rows written that way by
// older versions still parse, as RFC3339Nano reads both.
const timeLayout = "2006-01-02T15:04:05.000000000Z"

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

// DB is one sandbox's database.
type DB struct {
	sql *sql.DB
	// Statements of the hot paths (every command, every event published),
	// prepared once: SQLite's prepare cost more than the insert itself.
	insertCommand, insertEvent, unsynced, markSynced *sql.Stmt
}

// Open opens (creating if needed) the database at path.
func Open(path string) (*DB, error) {
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=busy_timeout(5000)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	// One connection: writes are serialised anyway, and it keeps WAL simple.
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(schema + ptySchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("sandbox db %s: %w", path, err)
	}
	d := &DB{sql: db}
	for _, st := range []struct {
		to    **sql.Stmt
		query string
	}{
		{&d.insertCommand, `INSERT INTO command_log(command, args, cwd, exit_code, duration_ms, stdout_len, stderr_len, created_at) VALUES(?, ?, ?, ?, ?, ?, ?, ?)`},
		{&d.insertEvent, `INSERT INTO events(event_id, type, payload, created_at) VALUES(?, ?, ?, ?)`},
		{&d.unsynced, `SELECT seq, event_id, type, payload, created_at FROM events WHERE synced = 0 ORDER BY seq LIMIT ?`},
		{&d.markSynced, `UPDATE events SET synced = 1 WHERE seq BETWEEN ? AND ?`},
	} {
		if *st.to, err = db.Prepare(st.query); err != nil {
			db.Close()
			return nil, fmt.Errorf("sandbox db %s: %w", path, err)
		}
	}
	return d, nil
}

// Close closes the database.
func (d *DB) Close() error {
	for _, st := range []*sql.Stmt{d.insertCommand, d.insertEvent, d.unsynced, d.markSynced} {
		st.Close()
	}
	return d.sql.Close()
}

// SetMeta stores a value under key.
func (d *DB) SetMeta(ctx context.Context, key string, value any) error {
	b, err := json.Marshal(value)
	if err != nil {
		return err
	}
	_, err = d.sql.ExecContext(ctx, `INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, key, string(b))
	return err
}

// Meta loads the value under key into out; it reports false when absent.
func (d *DB) Meta(ctx context.Context, key string, out any) (bool, error) {
	var s string
	err := d.sql.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&s)
	if err == sql.ErrNoRows {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, json.Unmarshal([]byte(s), out)
}

// Event is one row of the events table.
type Event struct {
	Seq       int64
	ID        string
	Type      string
	Payload   []byte // events.Marshal
	CreatedAt time.Time
}

// Command is one row of the command log.
type Command struct {
	Command    string
	Args       []string
	Cwd        string
	ExitCode   int
	DurationMs int64
	StdoutLen  int
	StderrLen  int
	CreatedAt  time.Time
}

// AddEvent records an event as not yet synced.
func (d *DB) AddEvent(ctx context.Context, ev Event) error {
	_, err := d.insertEvent.ExecContext(ctx, ev.ID, ev.Type, ev.Payload, formatTime(ev.CreatedAt))
	return err
}

// LogCommand records a finished command and its event in one transaction.
func (d *DB) LogCommand(ctx context.Context, c Command, ev Event) error {
	args, _ := json.Marshal(c.Args)
	return d.withEvent(ctx, ev, func(tx *sql.Tx) (bool, error) {
		_, err := tx.StmtContext(ctx, d.insertCommand).ExecContext(ctx, c.Command, string(args), c.Cwd, c.ExitCode, c.DurationMs, c.StdoutLen, c.StderrLen, formatTime(c.CreatedAt))
		return err == nil, err
	})
}

// withEvent runs change and, when it reports that it changed something,
// records ev, all in one transaction.
func (d *DB) withEvent(ctx context.Context, ev Event, change func(*sql.Tx) (bool, error)) error {
	tx, err := d.sql.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	changed, err := change(tx)
	if err != nil {
		return err
	}
	if changed {
		if _, err := tx.StmtContext(ctx, d.insertEvent).ExecContext(ctx, ev.ID, ev.Type, ev.Payload, formatTime(ev.CreatedAt)); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// Commands returns the command log, oldest first.
func (d *DB) Commands(ctx context.Context) ([]Command, error) {
	rows, err := d.sql.QueryContext(ctx, `SELECT command, args, cwd, exit_code, duration_ms, stdout_len, stderr_len, created_at FROM command_log ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Command
	for rows.Next() {
		var c Command
		var args, at string
		if err := rows.Scan(&c.Command, &args, &c.Cwd, &c.ExitCode, &c.DurationMs, &c.StdoutLen, &c.StderrLen, &at); err != nil {
			return nil, err
		}
		json.Unmarshal([]byte(args), &c.Args)
		c.CreatedAt, _ = time.Parse(time.RFC3339Nano, at)
		out = append(out, c)
	}
	return out, rows.Err()
}

// Unsynced returns up to limit events not yet acknowledged, oldest first.
func (d *DB) Unsynced(ctx context.Context, limit int) ([]Event, error) {
	rows, err := d.unsynced.QueryContext(ctx, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		var at string
		if err := rows.Scan(&e.Seq, &e.ID, &e.Type, &e.Payload, &at); err != nil {
			return nil, err
		}
		e.CreatedAt, _ = time.Parse(time.RFC3339Nano, at)
		out = append(out, e)
	}
	return out, rows.Err()
}

// MarkSynced flags events as acknowledged by the event stream. Acks arrive
// for whole batches, so the seqs collapse into a few ranges: one UPDATE each.
func (d *DB) MarkSynced(ctx context.Context, seqs []int64) error {
	if len(seqs) == 0 {
		return nil
	}
	sorted := append([]int64(nil), seqs...)
	slices.Sort(sorted)
	tx, err := d.sql.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for lo := 0; lo < len(sorted); {
		hi := lo
		for hi+1 < len(sorted) && sorted[hi+1] == sorted[hi]+1 {
			hi++
		}
		if _, err := tx.StmtContext(ctx, d.markSynced).ExecContext(ctx, sorted[lo], sorted[hi]); err != nil {
			return err
		}
		lo = hi + 1
	}
	return tx.Commit()
}

// CountUnsynced returns how many events wait to be published.
func (d *DB) CountUnsynced(ctx context.Context) (int, error) {
	n, _, err := d.Backlog(ctx)
	return n, err
}

// Backlog returns how many events wait to be published and when the oldest
// of them was recorded (zero when none wait).
func (d *DB) Backlog(ctx context.Context) (int, time.Time, error) {
	var n int
	var oldest sql.NullString
	err := d.sql.QueryRowContext(ctx, `SELECT count(*), min(created_at) FROM events WHERE synced = 0`).Scan(&n, &oldest)
	if err != nil || !oldest.Valid {
		return n, time.Time{}, err
	}
	t, _ := time.Parse(time.RFC3339Nano, oldest.String)
	return n, t, nil
}
