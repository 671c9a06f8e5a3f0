package store

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// User is one users row.
type User struct {
	ID    string
	OrgID string
	Email string
	Name  string
	Role  string // owner, admin, member
}

const userCols = `u.id::text, u.org_id::text, u.email, u.name, u.role`

func scanUser(row pgx.Row, extra ...any) (User, error) {
	var u User
	err := row.Scan(append([]any{&u.ID, &u.OrgID, &u.Email, &u.Name, &u.Role}, extra...)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return u, ErrNotFound
	}
	return u, err
}

// Identity is who WorkOS says signed in.
type Identity struct {
	WorkOSUserID  string
	Email         string
	EmailVerified bool
	Name          string
	WorkOSOrgID   string // "" when the user signed in outside an organization
	OrgName       string // the WorkOS organization's name, when there is one
}

// Sign-ins ProvisionUser turns down.
var (
	// ErrEmailUnverified: an email WorkOS has not verified links to no
	// user and makes none (it could be anybody's).
	ErrEmailUnverified = errors.New("the email of this sign-in is not verified")
	// ErrNoOrganization: a member of an org tied to a WorkOS organization
	// signed in outside it (removed from it in WorkOS), or a new user signed
	// in outside any organization where personal orgs are off.
	ErrNoOrganization = errors.New("sign in through your organization")
)

// ProvisionUser finds or creates the user of a sign-in and decides its org,
// in one transaction. The user is found by WorkOS user id, else by verified
// email (a user an operator made, linked on first sign-in), else made. The
// org follows the sign-in's WorkOS organization (created on first sight;
// a user who moved in WorkOS moves here too). Without one, a user keeps an
// org that is not tied to WorkOS, and a new user gets an org of its own if
// personalOrgs allows. The first user of an org owns it.
func (s *Store) ProvisionUser(ctx context.Context, id Identity, personalOrgs bool) (User, Org, error) {
	if id.WorkOSUserID == "" || id.Email == "" {
		return User{}, Org{}, errors.New("provision user: WorkOS user id and email are required")
	}
	var u User
	var o Org
	var err error
	// Two first sign-ins at once (same user, or same new organization)
	// race on the unique keys; the retry finds what the other one made.
	for range 3 {
		err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			var err error
			u, o, err = provision(ctx, tx, id, personalOrgs)
			return err
		})
		if !isUnique(err) {
			break
		}
	}
	if isUnique(err) {
		return User{}, Org{}, fmt.Errorf("provision user %s: %w", id.Email, ErrExists)
	}
	return u, o, err
}

func provision(ctx context.Context, tx pgx.Tx, id Identity, personalOrgs bool) (User, Org, error) {
	u, err := scanUser(tx.QueryRow(ctx, `SELECT `+userCols+` FROM users u WHERE workos_user_id = $1 FOR UPDATE`, id.WorkOSUserID))
	if errors.Is(err, ErrNotFound) {
		if !id.EmailVerified {
			return User{}, Org{}, ErrEmailUnverified
		}
		u, err = scanUser(tx.QueryRow(ctx, `UPDATE users u SET workos_user_id = $1
			WHERE lower(email) = lower($2) AND workos_user_id IS NULL RETURNING `+userCols, id.WorkOSUserID, id.Email))
	}
	known := err == nil
	if err != nil && !errors.Is(err, ErrNotFound) {
		return User{}, Org{}, err
	}

	var orgID string
	switch {
	case id.WorkOSOrgID != "":
		orgID, err = workosOrg(ctx, tx, id)
	case known:
		var tied bool
		err = tx.QueryRow(ctx, `SELECT id::text, workos_org_id IS NOT NULL FROM orgs WHERE id = $1`, u.OrgID).Scan(&orgID, &tied)
		if err == nil && tied {
			return User{}, Org{}, ErrNoOrganization
		}
	case personalOrgs:
		base, _, _ := strings.Cut(id.Email, "@")
		err = tx.QueryRow(ctx, `INSERT INTO orgs (name, slug) VALUES ($1, $2) RETURNING id::text`, id.Email, slugFor(base)).Scan(&orgID)
	default:
		return User{}, Org{}, ErrNoOrganization
	}
	if err != nil {
		return User{}, Org{}, err
	}
	// The org's row lock orders its first users: exactly one becomes owner.
	if _, err := tx.Exec(ctx, `SELECT 1 FROM orgs WHERE id = $1 FOR UPDATE`, orgID); err != nil {
		return User{}, Org{}, err
	}
	const role = `CASE WHEN EXISTS (SELECT 1 FROM users WHERE org_id = $1 AND workos_user_id IS DISTINCT FROM $4) THEN 'member' ELSE 'owner' END`
	email := id.Email
	if !id.EmailVerified {
		email = u.Email // a changed but unverified email is not taken over
	}
	if known {
		u, err = scanUser(tx.QueryRow(ctx, `UPDATE users u SET email = $2, name = COALESCE(NULLIF($3, ''), name),
			role = CASE WHEN org_id = $1 THEN role ELSE `+role+` END, org_id = $1
			WHERE workos_user_id = $4 RETURNING `+userCols, orgID, email, id.Name, id.WorkOSUserID))
	} else {
		u, err = scanUser(tx.QueryRow(ctx, `INSERT INTO users AS u (org_id, email, name, workos_user_id, role)
			VALUES ($1, $2, $3, $4, `+role+`) RETURNING `+userCols, orgID, email, id.Name, id.WorkOSUserID))
	}
	if err != nil {
		return User{}, Org{}, err
	}
	o, err := scanOrg(tx.QueryRow(ctx, `SELECT `+orgCols+` FROM orgs WHERE id = $1`, orgID))
	return u, o, err
}

// workosOrg returns the org tied to the sign-in's WorkOS organization,
// creating it on first sight.
func workosOrg(ctx context.Context, tx pgx.Tx, id Identity) (string, error) {
	name := cmp.Or(id.OrgName, id.WorkOSOrgID)
	var orgID string
	err := tx.QueryRow(ctx, `INSERT INTO orgs (name, slug, workos_org_id) VALUES ($1, $2, $3)
		ON CONFLICT (workos_org_id) DO NOTHING RETURNING id::text`, name, slugFor(name), id.WorkOSOrgID).Scan(&orgID)
	if errors.Is(err, pgx.ErrNoRows) {
		err = tx.QueryRow(ctx, `SELECT id::text FROM orgs WHERE workos_org_id = $1`, id.WorkOSOrgID).Scan(&orgID)
	}
	return orgID, err
}

var nonSlug = regexp.MustCompile(`[^a-z0-9]+`)

// slugFor makes a unique slug from a name: its letters and digits and a
// random suffix (slugs are unique; names need not be).
func slugFor(name string) string {
	s := strings.Trim(nonSlug.ReplaceAllString(strings.ToLower(name), "-"), "-")
	if len(s) > 40 {
		s = strings.TrimRight(s[:40], "-")
	}
	if s == "" {
		s = "org"
	}
	b := make([]byte, 3)
	rand.Read(b)
	return s + "-" + hex.EncodeToString(b)
}

// CreateDashboardSession stores a signed-in browser's session by the hash of
// its token; expired sessions are cleared on the way.
func (s *Store) CreateDashboardSession(ctx context.Context, userID, tokenHash string, expires time.Time) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM dashboard_sessions WHERE expires_at < now()`); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO dashboard_sessions (token_hash, user_id, expires_at) VALUES ($1, $2, $3)`, tokenHash, userID, expires)
	return err
}

// DashboardSession finds the user and org of a live session.
func (s *Store) DashboardSession(ctx context.Context, tokenHash string) (User, Org, error) {
	var o Org
	u, err := scanUser(s.pool.QueryRow(ctx, `SELECT `+userCols+`, o.id::text, o.name, o.slug, o.plan, o.max_concurrent_sandboxes, o.max_sandbox_timeout_sec, o.created_at
		FROM dashboard_sessions d JOIN users u ON u.id = d.user_id JOIN orgs o ON o.id = u.org_id
		WHERE d.token_hash = $1 AND d.expires_at > now()`, tokenHash),
		&o.ID, &o.Name, &o.Slug, &o.Plan, &o.MaxConcurrentSandboxes, &o.MaxSandboxTimeoutSec, &o.CreatedAt)
	return u, o, err
}

// DeleteDashboardSession ends a session (signing out).
func (s *Store) DeleteDashboardSession(ctx context.Context, tokenHash string) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM dashboard_sessions WHERE token_hash = $1`, tokenHash)
	return err
}

// ErrForbidden is an operation the user's role does not allow.
var ErrForbidden = errors.New("not allowed for this user")

// RevokeOrgKey revokes one of an org's live keys by id. With byUser set,
// only a key that user made (else ErrForbidden). Another org's key, an
// unknown id and a revoked key all answer ErrNotFound.
func (s *Store) RevokeOrgKey(ctx context.Context, orgID, keyID, byUser string) error {
	var createdBy string
	err := s.pool.QueryRow(ctx, `SELECT COALESCE(created_by::text, '') FROM api_keys
		WHERE id::text = $2 AND org_id = $1 AND revoked_at IS NULL`, orgID, keyID).Scan(&createdBy)
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	if byUser != "" && createdBy != byUser {
		return ErrForbidden
	}
	tag, err := s.pool.Exec(ctx, `UPDATE api_keys SET revoked_at = now() WHERE id::text = $2 AND org_id = $1 AND revoked_at IS NULL`, orgID, keyID)
	if err == nil && tag.RowsAffected() == 0 {
		return ErrNotFound // revoked meanwhile
	}
	return err
}

// CommandLog is one command_logs row.
type CommandLog struct {
	Command    string
	Args       []string
	Cwd        string
	ExitCode   int
	DurationMs int64
	StdoutLen  int64
	StderrLen  int64
	CreatedAt  time.Time
}

// Commands returns the newest commands of one of an org's sandboxes (the
// event syncer writes them); a sandbox of another org answers ErrNotFound.
func (s *Store) Commands(ctx context.Context, orgID, sandboxID string, limit int) ([]CommandLog, error) {
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM sandbox_sessions WHERE sandbox_id = $1 AND org_id = $2`, sandboxID, orgID).Scan(&n); err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, ErrNotFound
	}
	rows, err := s.pool.Query(ctx, `SELECT command, args, cwd, exit_code, duration_ms, stdout_len, stderr_len, created_at
		FROM command_logs WHERE sandbox_id = $1 ORDER BY created_at DESC LIMIT $2`, sandboxID, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (CommandLog, error) {
		var c CommandLog
		err := r.Scan(&c.Command, &c.Args, &c.Cwd, &c.ExitCode, &c.DurationMs, &c.StdoutLen, &c.StderrLen, &c.CreatedAt)
		return c, err
	})
}
