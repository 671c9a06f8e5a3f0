// Package store is the control plane's PostgreSQL data access: orgs, API
// keys, sandbox sessions (with the concurrent-sandbox quota) and workers.
// The schema lives in services/shared/pgschema.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/opensandbox/opensandbox/services/shared/errs"
	"github.com/opensandbox/opensandbox/services/shared/pgschema"
)

// Sentinel errors.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
)

// Store is the PostgreSQL store.
type Store struct {
	pool *pgxpool.Pool
}

// New returns a store over pool.
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Open connects to dsn, applies missing migrations when migrate is set, and
// refuses a schema that is behind this binary.
func Open(ctx context.Context, dsn string, migrate bool) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if migrate {
		if _, err := pgschema.Migrate(ctx, pool); err != nil {
			pool.Close()
			return nil, err
		}
	}
	if err := pgschema.Check(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return &Store{pool: pool}, nil
}

// Close closes the pool.
func (s *Store) Close() { s.pool.Close() }

// Pool returns the connection pool.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

func isUnique(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// Org is an organisation and its quotas.
type Org struct {
	ID                     string
	Name                   string
	Slug                   string
	Plan                   string
	MaxConcurrentSandboxes int
	MaxSandboxTimeoutSec   int
	CreatedAt              time.Time
}

const orgCols = `id::text, name, slug, plan, max_concurrent_sandboxes, max_sandbox_timeout_sec, created_at`

func scanOrg(row pgx.Row) (Org, error) {
	var o Org
	err := row.Scan(&o.ID, &o.Name, &o.Slug, &o.Plan, &o.MaxConcurrentSandboxes, &o.MaxSandboxTimeoutSec, &o.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return o, ErrNotFound
	}
	return o, err
}

// CreateOrg inserts an org; a taken slug answers ErrExists.
func (s *Store) CreateOrg(ctx context.Context, o Org) (Org, error) {
	if o.Plan == "" {
		o.Plan = "free"
	}
	out, err := scanOrg(s.pool.QueryRow(ctx, `INSERT INTO orgs (name, slug, plan, max_concurrent_sandboxes, max_sandbox_timeout_sec)
		VALUES ($1, $2, $3, $4, $5) RETURNING `+orgCols, o.Name, o.Slug, o.Plan, o.MaxConcurrentSandboxes, o.MaxSandboxTimeoutSec))
	if isUnique(err) {
		return out, fmt.Errorf("org %q: %w", o.Slug, ErrExists)
	}
	return out, err
}

// OrgBySlug finds an org by slug.
func (s *Store) OrgBySlug(ctx context.Context, slug string) (Org, error) {
	return scanOrg(s.pool.QueryRow(ctx, `SELECT `+orgCols+` FROM orgs WHERE slug = $1`, slug))
}

// Org finds an org by id.
func (s *Store) Org(ctx context.Context, id string) (Org, error) {
	return scanOrg(s.pool.QueryRow(ctx, `SELECT `+orgCols+` FROM orgs WHERE id = $1`, id))
}

// UpdateOrgQuota changes an org's limits.
func (s *Store) UpdateOrgQuota(ctx context.Context, id string, maxConcurrent, maxTimeoutSec int) error {
	tag, err := s.pool.Exec(ctx, `UPDATE orgs SET max_concurrent_sandboxes = $2, max_sandbox_timeout_sec = $3, updated_at = now() WHERE id = $1`, id, maxConcurrent, maxTimeoutSec)
	if err == nil && tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return err
}

// APIKey is a stored key (never the key itself).
type APIKey struct {
	ID        string
	OrgID     string
	CreatedBy string // the user who made it ("" for an operator's key)
	Name      string
	Prefix    string
	Scopes    []string
	LastUsed  *time.Time
	ExpiresAt *time.Time
	RevokedAt *time.Time
	CreatedAt time.Time
}

// KeyOwner is a key together with its org, as the auth middleware needs it.
type KeyOwner struct {
	Key APIKey
	Org Org
}

const keyCols = `k.id::text, k.org_id::text, COALESCE(k.created_by::text, ''), k.name, k.key_prefix, k.scopes, k.last_used, k.expires_at, k.revoked_at, k.created_at`

func scanKey(row pgx.Row, extra ...any) (APIKey, error) {
	var k APIKey
	err := row.Scan(append([]any{&k.ID, &k.OrgID, &k.CreatedBy, &k.Name, &k.Prefix, &k.Scopes, &k.LastUsed, &k.ExpiresAt, &k.RevokedAt, &k.CreatedAt}, extra...)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return k, ErrNotFound
	}
	return k, err
}

// CreateAPIKey stores a key by its hash; a hash already stored answers ErrExists.
func (s *Store) CreateAPIKey(ctx context.Context, k APIKey, hash string) (APIKey, error) {
	if len(k.Scopes) == 0 {
		k.Scopes = []string{"sandboxes:write"}
	}
	out, err := scanKey(s.pool.QueryRow(ctx, `INSERT INTO api_keys AS k (org_id, name, key_hash, key_prefix, scopes, expires_at, created_by)
		VALUES ($1, $2, $3, $4, $5, $6, NULLIF($7, '')::uuid) RETURNING `+keyCols, k.OrgID, k.Name, hash, k.Prefix, k.Scopes, k.ExpiresAt, k.CreatedBy))
	if isUnique(err) {
		return out, fmt.Errorf("api key: %w", ErrExists)
	}
	return out, err
}

// KeyByHash finds a key and its org by the key's hash (revoked and expired
// keys included: the caller decides).
func (s *Store) KeyByHash(ctx context.Context, hash string) (KeyOwner, error) {
	var o Org
	k, err := scanKey(s.pool.QueryRow(ctx, `SELECT `+keyCols+`, o.id::text, o.name, o.slug, o.plan, o.max_concurrent_sandboxes, o.max_sandbox_timeout_sec, o.created_at
		FROM api_keys k JOIN orgs o ON o.id = k.org_id WHERE k.key_hash = $1`, hash),
		&o.ID, &o.Name, &o.Slug, &o.Plan, &o.MaxConcurrentSandboxes, &o.MaxSandboxTimeoutSec, &o.CreatedAt)
	return KeyOwner{Key: k, Org: o}, err
}

// TouchKey records a use of a key, at most once a minute per key.
func (s *Store) TouchKey(ctx context.Context, id string) error {
	_, err := s.pool.Exec(ctx, `UPDATE api_keys SET last_used = now() WHERE id = $1 AND (last_used IS NULL OR last_used < now() - interval '1 minute')`, id)
	return err
}

// AddKeyScopes gives the key with this hash the scopes it lacks; it reports
// whether such a key exists.
func (s *Store) AddKeyScopes(ctx context.Context, hash string, scopes []string) (bool, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE api_keys SET scopes = ARRAY(SELECT DISTINCT unnest(scopes || $2::text[]) ORDER BY 1)
		WHERE key_hash = $1`, hash, scopes)
	return tag.RowsAffected() > 0, err
}

// RevokeKey revokes a key by id or by its visible prefix (which must match
// exactly one live key).
func (s *Store) RevokeKey(ctx context.Context, idOrPrefix string) (APIKey, error) {
	var k APIKey
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+keyCols+` FROM api_keys k
			WHERE (k.id::text = $1 OR k.key_prefix = $1) AND k.revoked_at IS NULL FOR UPDATE`, idOrPrefix)
		if err != nil {
			return err
		}
		keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (APIKey, error) { return scanKey(r) })
		if err != nil {
			return err
		}
		switch len(keys) {
		case 0:
			return ErrNotFound
		case 1:
		default:
			return fmt.Errorf("%d live keys have prefix %q; revoke by id", len(keys), idOrPrefix)
		}
		k, err = scanKey(tx.QueryRow(ctx, `UPDATE api_keys k SET revoked_at = now() WHERE id = $1 RETURNING `+keyCols, keys[0].ID))
		return err
	})
	return k, err
}

// RevokedKey is a key revoked a while ago.
type RevokedKey struct {
	ID  string
	Ago time.Duration // since its revocation
}

// RevokedKeys lists the keys revoked within the last window (what workers
// must know to refuse the sandbox tokens minted for them).
func (s *Store) RevokedKeys(ctx context.Context, window time.Duration) ([]RevokedKey, error) {
	rows, err := s.pool.Query(ctx, `SELECT id::text, (extract(epoch FROM now() - revoked_at) * 1000)::bigint FROM api_keys
		WHERE revoked_at IS NOT NULL AND revoked_at > now() - make_interval(secs => $1)`, window.Seconds())
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (RevokedKey, error) {
		var k RevokedKey
		var ms int64
		err := r.Scan(&k.ID, &ms)
		k.Ago = time.Duration(ms) * time.Millisecond
		return k, err
	})
}

// ListKeys lists an org's keys, newest first.
func (s *Store) ListKeys(ctx context.Context, orgID string) ([]APIKey, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+keyCols+` FROM api_keys k WHERE k.org_id = $1 ORDER BY k.created_at DESC`, orgID)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (APIKey, error) { return scanKey(r) })
}

// QuotaExceeded is the error of a create over an org's concurrent limit.
var QuotaExceeded = errs.New(errs.KindQuota, "quota_exceeded", "concurrent sandbox limit reached")
