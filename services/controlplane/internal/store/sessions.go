package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/opensandbox/opensandbox/services/shared/api"
)

// pendingPrefix marks a session row reserved for a sandbox being created: it
// counts against the org's quota until the create commits or aborts.
const pendingPrefix = "pending:"

// Session is one sandbox_sessions row.
type Session struct {
	ID        string
	SandboxID string
	OrgID     string // "" when created with the static key
	Template  string
	Region    string
	WorkerID  string
	Status    string
	Config    api.SandboxConfig
	Metadata  map[string]string
	StartedAt time.Time
	EndAt     *time.Time
	StoppedAt *time.Time
	ErrorMsg  string
}

const sessionCols = `id::text, sandbox_id, COALESCE(org_id::text, ''), template, region, worker_id, status, config, metadata, started_at, end_at, stopped_at, COALESCE(error_msg, '')`

func scanSession(row pgx.Row) (Session, error) {
	var s Session
	var cfg, md []byte
	err := row.Scan(&s.ID, &s.SandboxID, &s.OrgID, &s.Template, &s.Region, &s.WorkerID, &s.Status, &cfg, &md, &s.StartedAt, &s.EndAt, &s.StoppedAt, &s.ErrorMsg)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, ErrNotFound
	}
	if err != nil {
		return s, err
	}
	json.Unmarshal(cfg, &s.Config)
	json.Unmarshal(md, &s.Metadata)
	return s, nil
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// Reservation is a quota slot held for a sandbox being created.
type Reservation struct {
	ID    string
	OrgID string
}

// Reserve takes one of an org's concurrent-sandbox slots: under a lock on the
// org row it counts the org's running sessions (and reservations), refuses
// with QuotaExceeded at the limit, and inserts a reservation row. With orgID
// "" (the static key) nothing is counted. Commit or Abort the reservation.
func (s *Store) Reserve(ctx context.Context, orgID string, maxConcurrent int) (Reservation, error) {
	var r Reservation
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if orgID != "" {
			var max int
			if err := tx.QueryRow(ctx, `SELECT max_concurrent_sandboxes FROM orgs WHERE id = $1 FOR UPDATE`, orgID).Scan(&max); err != nil {
				if errors.Is(err, pgx.ErrNoRows) {
					return fmt.Errorf("org %s: %w", orgID, ErrNotFound)
				}
				return err
			}
			if maxConcurrent <= 0 || max < maxConcurrent {
				maxConcurrent = max
			}
			var n int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM sandbox_sessions
				WHERE org_id = $1 AND status = 'running' AND (end_at IS NULL OR end_at > now())`, orgID).Scan(&n); err != nil {
				return err
			}
			if n >= maxConcurrent {
				return QuotaExceeded
			}
		}
		return tx.QueryRow(ctx, `INSERT INTO sandbox_sessions (sandbox_id, org_id, template, region, worker_id)
			VALUES ($1 || gen_random_uuid()::text, $2, '', '', '') RETURNING id::text`, pendingPrefix, nullable(orgID)).Scan(&r.ID)
	})
	r.OrgID = orgID
	return r, err
}

// Commit turns a reservation into the session of a created sandbox, in one
// transaction: the reservation goes and the session row is inserted with the
// control plane's data. The event syncer may have inserted that row already
// (the worker publishes `created` before the gRPC reply reaches us), so an
// existing row is merged into, not collided with: it takes the control
// plane's data, and keeps a stopped or error status (with its stop time and
// message) that the syncer recorded meanwhile.
func (s *Store) Commit(ctx context.Context, r Reservation, sess Session) error {
	cfg, _ := json.Marshal(sess.Config)
	md, _ := json.Marshal(sess.Metadata)
	if sess.Metadata == nil {
		md = []byte("{}")
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var org *string
		err := tx.QueryRow(ctx, `DELETE FROM sandbox_sessions WHERE id = $1 AND sandbox_id LIKE 'pending:%' RETURNING org_id::text`, r.ID).Scan(&org)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("reservation %s: %w", r.ID, ErrNotFound)
		}
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO sandbox_sessions (id, sandbox_id, org_id, template, region, worker_id, config, metadata, started_at, end_at, status)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'running')
			ON CONFLICT (sandbox_id) DO UPDATE SET org_id = EXCLUDED.org_id, template = EXCLUDED.template, region = EXCLUDED.region,
				worker_id = EXCLUDED.worker_id, config = EXCLUDED.config, metadata = EXCLUDED.metadata,
				started_at = EXCLUDED.started_at, end_at = EXCLUDED.end_at,
				status = CASE WHEN sandbox_sessions.status IN ('stopped', 'error') THEN sandbox_sessions.status ELSE 'running' END`,
			r.ID, sess.SandboxID, org, sess.Template, sess.Region, sess.WorkerID, cfg, md, sess.StartedAt, sess.EndAt)
		return err
	})
}

// Abort releases a reservation whose create failed.
func (s *Store) Abort(ctx context.Context, r Reservation) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM sandbox_sessions WHERE id = $1 AND sandbox_id LIKE 'pending:%'`, r.ID)
	return err
}

// Session returns the session of a sandbox.
func (s *Store) Session(ctx context.Context, sandboxID string) (Session, error) {
	return scanSession(s.pool.QueryRow(ctx, `SELECT `+sessionCols+` FROM sandbox_sessions WHERE sandbox_id = $1`, sandboxID))
}

// ListSessions lists sessions newest first; orgID "" lists every org's,
// status "" every status.
func (s *Store) ListSessions(ctx context.Context, orgID, status string, limit int) ([]Session, error) {
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	rows, err := s.pool.Query(ctx, `SELECT `+sessionCols+` FROM sandbox_sessions
		WHERE ($1 = '' OR org_id = $1::uuid) AND ($2 = '' OR status = $2) AND sandbox_id NOT LIKE 'pending:%'
		ORDER BY started_at DESC LIMIT $3`, orgID, status, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Session, error) { return scanSession(r) })
}

// EndSession marks a running session stopped or error; it reports whether a
// running session changed.
func (s *Store) EndSession(ctx context.Context, sandboxID, status, errMsg string) (bool, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE sandbox_sessions SET status = $2, stopped_at = now(), error_msg = $3
		WHERE sandbox_id = $1 AND status = 'running'`, sandboxID, status, nullable(errMsg))
	return tag.RowsAffected() > 0, err
}

// SetSessionEnd records a sandbox's new end time.
func (s *Store) SetSessionEnd(ctx context.Context, sandboxID string, end time.Time) error {
	_, err := s.pool.Exec(ctx, `UPDATE sandbox_sessions SET end_at = $2 WHERE sandbox_id = $1`, sandboxID, end)
	return err
}

// FailWorkerSessions marks the running sessions of a lost worker as error.
func (s *Store) FailWorkerSessions(ctx context.Context, workerID, msg string) (int64, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE sandbox_sessions SET status = 'error', stopped_at = now(), error_msg = $2
		WHERE worker_id = $1 AND status = 'running'`, workerID, msg)
	return tag.RowsAffected(), err
}

// ReconcileWorker brings a worker's sessions in line with the sandboxes it
// really runs (alive, listed at listedAt): a session marked error while the
// worker was away (lost, then back) whose sandbox is alive runs again, and a
// running session whose sandbox is not there any more is stopped. Sessions
// that started after listedAt are left alone: their create may have raced
// with the listing.
func (s *Store) ReconcileWorker(ctx context.Context, workerID string, alive []string, listedAt time.Time) (revived, ended int64, err error) {
	if alive == nil {
		alive = []string{}
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE sandbox_sessions SET status = 'running', error_msg = NULL, stopped_at = NULL
			WHERE worker_id = $1 AND status = 'error' AND sandbox_id = ANY($2)`, workerID, alive)
		if err != nil {
			return err
		}
		revived = tag.RowsAffected()
		tag, err = tx.Exec(ctx, `UPDATE sandbox_sessions SET status = 'stopped', stopped_at = now()
			WHERE worker_id = $1 AND status = 'running' AND NOT (sandbox_id = ANY($2)) AND sandbox_id NOT LIKE 'pending:%'
				AND started_at < $3`, workerID, alive, listedAt)
		if err != nil {
			return err
		}
		ended = tag.RowsAffected()
		return nil
	})
	return revived, ended, err
}

// SweepSessions marks running sessions whose end passed more than grace ago
// as stopped (their worker destroyed them at that time; the event pipeline
// records the same thing) and drops reservations older than abandon.
func (s *Store) SweepSessions(ctx context.Context, grace, abandon time.Duration) (expired, dropped int64, err error) {
	tag, err := s.pool.Exec(ctx, `UPDATE sandbox_sessions SET status = 'stopped', stopped_at = end_at
		WHERE status = 'running' AND end_at < now() - make_interval(secs => $1)`, grace.Seconds())
	if err != nil {
		return 0, 0, err
	}
	expired = tag.RowsAffected()
	tag, err = s.pool.Exec(ctx, `DELETE FROM sandbox_sessions WHERE sandbox_id LIKE 'pending:%' AND started_at < now() - make_interval(secs => $1)`, abandon.Seconds())
	return expired, tag.RowsAffected(), err
}

// Worker is one workers row.
type Worker struct {
	ID            string
	Region        string
	GRPCAddr      string
	HTTPAddr      string
	Capacity      int
	Current       int
	Status        string
	LastHeartbeat time.Time
}

// UpsertWorker records a worker's latest heartbeat.
func (s *Store) UpsertWorker(ctx context.Context, w Worker) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO workers (id, region, grpc_addr, http_addr, capacity, current_count, status, last_heartbeat)
		VALUES ($1, $2, $3, $4, $5, $6, 'healthy', $7)
		ON CONFLICT (id) DO UPDATE SET region = $2, grpc_addr = $3, http_addr = $4, capacity = $5, current_count = $6,
			status = 'healthy', last_heartbeat = $7`, w.ID, w.Region, w.GRPCAddr, w.HTTPAddr, w.Capacity, w.Current, w.LastHeartbeat)
	return err
}

// MarkWorkerStale records that a worker stopped beating.
func (s *Store) MarkWorkerStale(ctx context.Context, id string) error {
	_, err := s.pool.Exec(ctx, `UPDATE workers SET status = 'stale' WHERE id = $1`, id)
	return err
}

// Workers lists the recorded workers.
func (s *Store) Workers(ctx context.Context) ([]Worker, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, region, grpc_addr, http_addr, capacity, current_count, status, last_heartbeat FROM workers ORDER BY id`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Worker, error) {
		var w Worker
		err := r.Scan(&w.ID, &w.Region, &w.GRPCAddr, &w.HTTPAddr, &w.Capacity, &w.Current, &w.Status, &w.LastHeartbeat)
		return w, err
	})
}
