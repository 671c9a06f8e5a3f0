package sandboxdb

import (
	"context"
	"database/sql"
	"time"
)

const ptySchema = `
CREATE TABLE IF NOT EXISTS pty_sessions (
	id         TEXT PRIMARY KEY,
	started_at TEXT NOT NULL,
	ended_at   TEXT,
	bytes_in   INTEGER NOT NULL DEFAULT 0,
	bytes_out  INTEGER NOT NULL DEFAULT 0
);
`

// PTYSession is one row of pty_sessions. EndedAt is zero while it runs.
type PTYSession struct {
	ID        string
	StartedAt time.Time
	EndedAt   time.Time
	BytesIn   int64
	BytesOut  int64
}

// StartPTY records a new terminal session and its pty_start event.
func (d *DB) StartPTY(ctx context.Context, s PTYSession, ev Event) error {
	return d.withEvent(ctx, ev, func(tx *sql.Tx) (bool, error) {
		_, err := tx.ExecContext(ctx, `INSERT INTO pty_sessions(id, started_at) VALUES(?, ?)`, s.ID, formatTime(s.StartedAt))
		return err == nil, err
	})
}

// EndPTY records the end of a session and its pty_end event, once: a
// session that already ended is left as it is and no event is added. It
// reports whether this call ended the session.
func (d *DB) EndPTY(ctx context.Context, s PTYSession, ev Event) (bool, error) {
	ended := false
	err := d.withEvent(ctx, ev, func(tx *sql.Tx) (bool, error) {
		res, err := tx.ExecContext(ctx, `UPDATE pty_sessions SET ended_at = ?, bytes_in = ?, bytes_out = ? WHERE id = ? AND ended_at IS NULL`,
			formatTime(s.EndedAt), s.BytesIn, s.BytesOut, s.ID)
		if err != nil {
			return false, err
		}
		n, err := res.RowsAffected()
		ended = n == 1
		return ended, err
	})
	return ended, err
}

// PTYSessions returns every session, oldest first.
func (d *DB) PTYSessions(ctx context.Context) ([]PTYSession, error) {
	rows, err := d.sql.QueryContext(ctx, `SELECT id, started_at, ended_at, bytes_in, bytes_out FROM pty_sessions ORDER BY started_at, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []PTYSession
	for rows.Next() {
		var s PTYSession
		var started string
		var ended sql.NullString
		if err := rows.Scan(&s.ID, &started, &ended, &s.BytesIn, &s.BytesOut); err != nil {
			return nil, err
		}
		s.StartedAt, _ = time.Parse(time.RFC3339Nano, started)
		if ended.Valid {
			s.EndedAt, _ = time.Parse(time.RFC3339Nano, ended.String)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}
