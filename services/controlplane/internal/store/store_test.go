package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/shared/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func open(t *testing.T) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := Open(ctx, pgtest.NewDatabase(t), true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

func TestOpenRefusesUnmigratedDatabase(t *testing.T) {
	ctx := context.Background()
	if _, err := Open(ctx, pgtest.NewDatabase(t), false); err == nil || !strings.Contains(err.Error(), "behind") {
		t.Fatalf("open without migrations: %v", err)
	}
}

func TestKeys(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	org, err := st.CreateOrg(ctx, Org{Name: "Acme", Slug: "acme", MaxConcurrentSandboxes: 2, MaxSandboxTimeoutSec: 600})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateOrg(ctx, Org{Name: "Acme 2", Slug: "acme", MaxConcurrentSandboxes: 1, MaxSandboxTimeoutSec: 1}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate slug: %v", err)
	}
	key := NewKey()
	if !strings.HasPrefix(key, "osb_") || len(key) != 44 || HashKey(key) == key || len(HashKey(key)) != 64 {
		t.Fatalf("key %q hash %q", key, HashKey(key))
	}
	k, err := st.CreateAPIKey(ctx, APIKey{OrgID: org.ID, Name: "ci", Prefix: VisiblePrefix(key)}, HashKey(key))
	if err != nil {
		t.Fatal(err)
	}
	if k.Prefix != key[:12] || len(k.Scopes) != 1 || k.Scopes[0] != "sandboxes:write" {
		t.Fatalf("key row %+v", k)
	}
	// The key itself is nowhere in the database.
	var n int
	st.pool.QueryRow(ctx, `SELECT count(*) FROM api_keys WHERE key_hash = $1 OR key_prefix = $1`, key).Scan(&n)
	if n != 0 {
		t.Fatal("the plain key is stored")
	}
	owner, err := st.KeyByHash(ctx, HashKey(key))
	if err != nil || owner.Org.Slug != "acme" || owner.Org.MaxConcurrentSandboxes != 2 || owner.Key.ID != k.ID {
		t.Fatalf("lookup: %+v %v", owner, err)
	}
	if _, err := st.KeyByHash(ctx, HashKey("nope")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown key: %v", err)
	}
	if err := st.TouchKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	owner, _ = st.KeyByHash(ctx, HashKey(key))
	if owner.Key.LastUsed == nil {
		t.Fatal("last_used not recorded")
	}
	if r, err := st.RevokeKey(ctx, k.Prefix); err != nil || r.RevokedAt == nil {
		t.Fatalf("revoke: %+v %v", r, err)
	}
	if _, err := st.RevokeKey(ctx, k.Prefix); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second revoke: %v", err)
	}
	keys, err := st.ListKeys(ctx, org.ID)
	if err != nil || len(keys) != 1 || keys[0].RevokedAt == nil {
		t.Fatalf("list: %+v %v", keys, err)
	}
	// Revoked keys are listed for workers while their tokens may live;
	// one revoked long ago is not.
	revoked, err := st.RevokedKeys(ctx, time.Hour)
	if err != nil || len(revoked) != 1 || revoked[0].ID != k.ID || revoked[0].Ago < 0 || revoked[0].Ago > time.Minute {
		t.Fatalf("revoked keys: %+v %v", revoked, err)
	}
	if _, err := st.Pool().Exec(ctx, `UPDATE api_keys SET revoked_at = now() - interval '2 hours'`); err != nil {
		t.Fatal(err)
	}
	if revoked, err := st.RevokedKeys(ctx, time.Hour); err != nil || len(revoked) != 0 {
		t.Fatalf("a key revoked 2 h ago is listed for a 1 h window: %+v %v", revoked, err)
	}
	if VisiblePrefix("test-key") != "test" {
		t.Fatalf("short key prefix %q", VisiblePrefix("test-key"))
	}
}

func TestQuotaReservations(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	org, err := st.CreateOrg(ctx, Org{Name: "Q", Slug: "q", MaxConcurrentSandboxes: 3, MaxSandboxTimeoutSec: 600})
	if err != nil {
		t.Fatal(err)
	}
	// Ten concurrent creates against a limit of three: exactly three win.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var won []Reservation
	quota := 0
	for range 10 {
		wg.Go(func() {
			r, err := st.Reserve(ctx, org.ID, 0)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, QuotaExceeded):
				quota++
			case err != nil:
				t.Error(err)
			default:
				won = append(won, r)
			}
		})
	}
	wg.Wait()
	if len(won) != 3 || quota != 7 {
		t.Fatalf("%d reservations, %d refused", len(won), quota)
	}
	end := time.Now().Add(time.Minute)
	for i, r := range won[:2] {
		if err := st.Commit(ctx, r, Session{SandboxID: "sb" + string(rune('a'+i)), Template: "base", Region: "eu", WorkerID: "w1",
			Config: api.SandboxConfig{TemplateID: "base", Timeout: 60}, Metadata: map[string]string{"k": "v"}, StartedAt: time.Now(), EndAt: &end}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Abort(ctx, won[2]); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Reserve(ctx, org.ID, 0); err != nil {
		t.Fatalf("slot freed by abort not reusable: %v", err)
	}
	if _, err := st.Reserve(ctx, org.ID, 0); !errors.Is(err, QuotaExceeded) {
		t.Fatalf("over quota: %v", err)
	}
	sessions, err := st.ListSessions(ctx, org.ID, "running", 0)
	if err != nil || len(sessions) != 2 || sessions[0].Metadata["k"] != "v" || sessions[0].Config.Timeout != 60 {
		t.Fatalf("sessions: %+v %v", sessions, err)
	}
	// Stopping one frees a slot; the static key (no org) is never counted.
	if ok, err := st.EndSession(ctx, "sba", "stopped", ""); !ok || err != nil {
		t.Fatalf("end: %v %v", ok, err)
	}
	if ok, _ := st.EndSession(ctx, "sba", "stopped", ""); ok {
		t.Fatal("ended twice")
	}
	if _, err := st.Reserve(ctx, org.ID, 0); err != nil {
		t.Fatalf("slot freed by stop not reusable: %v", err)
	}
	for range 5 {
		if _, err := st.Reserve(ctx, "", 0); err != nil {
			t.Fatal(err)
		}
	}
	s, err := st.Session(ctx, "sba")
	if err != nil || s.Status != "stopped" || s.StoppedAt == nil || s.OrgID != org.ID {
		t.Fatalf("stopped session: %+v %v", s, err)
	}
	// A lower per-call limit (a plan override) applies too.
	other, _ := st.CreateOrg(ctx, Org{Name: "O", Slug: "o", MaxConcurrentSandboxes: 5, MaxSandboxTimeoutSec: 60})
	if _, err := st.Reserve(ctx, other.ID, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Reserve(ctx, other.ID, 1); !errors.Is(err, QuotaExceeded) {
		t.Fatalf("per-call limit: %v", err)
	}
}

// The event syncer may insert a sandbox's session row (from its `created`
// event, or an end event) before the control plane commits the create:
// Commit merges into that row instead of failing on the unique sandbox_id,
// keeps an end the syncer recorded, and releases the reservation.
func TestCommitMergesTheSyncersRow(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	org, err := st.CreateOrg(ctx, Org{Name: "R", Slug: "r", MaxConcurrentSandboxes: 5, MaxSandboxTimeoutSec: 600})
	if err != nil {
		t.Fatal(err)
	}
	end := time.Now().Add(time.Minute).UTC().Truncate(time.Microsecond)
	for _, tc := range []struct{ syncerStatus, want string }{{"running", "running"}, {"stopped", "stopped"}, {"error", "error"}} {
		t.Run(tc.syncerStatus, func(t *testing.T) {
			id := "race-" + tc.syncerStatus
			r, err := st.Reserve(ctx, org.ID, 0)
			if err != nil {
				t.Fatal(err)
			}
			// What the syncer's insertSessions / endSessions write.
			if _, err := st.pool.Exec(ctx, `INSERT INTO sandbox_sessions (sandbox_id, org_id, template, region, worker_id, status, stopped_at, error_msg)
				VALUES ($1, $2, '', 'eu', 'w1', $3, CASE WHEN $3 <> 'running' THEN now() END, CASE WHEN $3 = 'error' THEN 'boom' END)`,
				id, org.ID, tc.syncerStatus); err != nil {
				t.Fatal(err)
			}
			err = st.Commit(ctx, r, Session{SandboxID: id, Template: "base", Region: "eu", WorkerID: "w1",
				Config: api.SandboxConfig{TemplateID: "base", Timeout: 60}, Metadata: map[string]string{"k": "v"}, StartedAt: time.Now(), EndAt: &end})
			if err != nil {
				t.Fatalf("commit after the syncer's row: %v", err)
			}
			s, err := st.Session(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if s.Status != tc.want || s.Template != "base" || s.Metadata["k"] != "v" || s.Config.Timeout != 60 || s.OrgID != org.ID ||
				s.EndAt == nil || !s.EndAt.Equal(end) {
				t.Fatalf("merged session %+v", s)
			}
			if tc.want != "running" && s.StoppedAt == nil {
				t.Fatalf("the syncer's stop time was lost: %+v", s)
			}
			if tc.want == "error" && s.ErrorMsg != "boom" {
				t.Fatalf("the syncer's error was lost: %+v", s)
			}
			var rows, pending int
			st.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE sandbox_id = $1), count(*) FILTER (WHERE sandbox_id LIKE 'pending:%') FROM sandbox_sessions`, id).Scan(&rows, &pending)
			if rows != 1 || pending != 0 {
				t.Fatalf("%d rows for the sandbox, %d reservations left", rows, pending)
			}
			if err := st.Commit(ctx, r, Session{SandboxID: id, StartedAt: time.Now(), EndAt: &end}); !errors.Is(err, ErrNotFound) {
				t.Fatalf("a second commit of the same reservation: %v", err)
			}
		})
	}
}

func TestWorkerLossAndSweep(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	past := time.Now().Add(-time.Minute)
	future := time.Now().Add(time.Hour)
	for _, s := range []Session{
		{SandboxID: "a", WorkerID: "w1", EndAt: &future},
		{SandboxID: "b", WorkerID: "w1", EndAt: &future},
		{SandboxID: "c", WorkerID: "w2", EndAt: &future},
		{SandboxID: "d", WorkerID: "w2", EndAt: &past},
	} {
		r, err := st.Reserve(ctx, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		s.Template, s.Region, s.StartedAt = "base", "eu", time.Now()
		if err := st.Commit(ctx, r, s); err != nil {
			t.Fatal(err)
		}
	}
	n, err := st.FailWorkerSessions(ctx, "w1", "worker w1 lost")
	if err != nil || n != 2 {
		t.Fatalf("fail: %d %v", n, err)
	}
	a, _ := st.Session(ctx, "a")
	if a.Status != "error" || a.ErrorMsg != "worker w1 lost" {
		t.Fatalf("failed session %+v", a)
	}
	st.Reserve(ctx, "", 0) // an abandoned reservation
	expired, dropped, err := st.SweepSessions(ctx, 10*time.Second, 0)
	if err != nil || expired != 1 || dropped != 1 {
		t.Fatalf("sweep: %d %d %v", expired, dropped, err)
	}
	d, _ := st.Session(ctx, "d")
	if d.Status != "stopped" {
		t.Fatalf("expired session %+v", d)
	}
	list, _ := st.ListSessions(ctx, "", "", 0)
	if len(list) != 4 {
		t.Fatalf("%d sessions", len(list))
	}
	w := Worker{ID: "w1", Region: "eu", GRPCAddr: "h:9090", HTTPAddr: "http://h:8081", Capacity: 10, Current: 2, LastHeartbeat: time.Now()}
	if err := st.UpsertWorker(ctx, w); err != nil {
		t.Fatal(err)
	}
	w.Current = 3
	st.UpsertWorker(ctx, w)
	st.MarkWorkerStale(ctx, "w1")
	ws, err := st.Workers(ctx)
	if err != nil || len(ws) != 1 || ws[0].Current != 3 || ws[0].Status != "stale" {
		t.Fatalf("workers %+v %v", ws, err)
	}
}

func TestProvisionUser(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	verified := func(user, email, org string) Identity {
		return Identity{WorkOSUserID: user, Email: email, EmailVerified: true, WorkOSOrgID: org}
	}
	// A user an operator made before WorkOS: linked by verified email (any
	// case), same org and role.
	org, err := s.CreateOrg(ctx, Org{Name: "Acme", Slug: "acme", MaxConcurrentSandboxes: 5, MaxSandboxTimeoutSec: 60})
	if err != nil {
		t.Fatal(err)
	}
	var before string
	if err := s.pool.QueryRow(ctx, `INSERT INTO users (org_id, email, role) VALUES ($1, 'ops@acme.test', 'admin') RETURNING id::text`, org.ID).Scan(&before); err != nil {
		t.Fatal(err)
	}
	// An unverified email links to nobody and makes nobody.
	unverified := verified("user_01EVIL", "ops@acme.test", "")
	unverified.EmailVerified = false
	if _, _, err := s.ProvisionUser(ctx, unverified, true); !errors.Is(err, ErrEmailUnverified) {
		t.Fatalf("unverified email: %v, want ErrEmailUnverified", err)
	}
	u, o, err := s.ProvisionUser(ctx, verified("user_01OPS", "OPS@Acme.test", ""), false)
	if err != nil || u.ID != before || o.ID != org.ID || u.Role != "admin" {
		t.Fatalf("linked user %+v org %+v: %v (want user %s in %s)", u, o, err, before, org.ID)
	}
	// Signing in again with a changed email follows the WorkOS id.
	u2, _, err := s.ProvisionUser(ctx, verified("user_01OPS", "ops2@acme.test", ""), false)
	if err != nil || u2.ID != before || u2.Email != "ops2@acme.test" {
		t.Fatalf("same WorkOS id, new email: %+v, %v", u2, err)
	}
	// A new user outside any organization: refused unless personal orgs are on.
	if _, _, err := s.ProvisionUser(ctx, verified("user_01SOLO", "Solo.Dev@Example.test", ""), false); !errors.Is(err, ErrNoOrganization) {
		t.Fatalf("new user without an organization: %v, want ErrNoOrganization", err)
	}
	solo, soloOrg, err := s.ProvisionUser(ctx, verified("user_01SOLO", "Solo.Dev@Example.test", ""), true)
	if err != nil || solo.Role != "owner" || soloOrg.ID == org.ID || !strings.HasPrefix(soloOrg.Slug, "solo-dev-") {
		t.Fatalf("solo user %+v org %+v: %v", solo, soloOrg, err)
	}
	// Another WorkOS user with an email already linked elsewhere is refused, not merged.
	if _, _, err := s.ProvisionUser(ctx, verified("user_01OTHER", "ops2@acme.test", ""), true); !errors.Is(err, ErrExists) {
		t.Fatalf("taken email: %v, want ErrExists", err)
	}
	if _, _, err := s.ProvisionUser(ctx, Identity{Email: "x@y.test", EmailVerified: true}, true); err == nil {
		t.Fatal("an identity without a WorkOS id was provisioned")
	}

	// Many first sign-ins of one new WorkOS organization at once: one org,
	// every user in it, exactly one owner.
	const n = 8
	errc := make(chan error, n)
	for i := range n {
		go func() {
			_, _, err := s.ProvisionUser(ctx, verified(fmt.Sprintf("user_01T%d", i), fmt.Sprintf("t%d@team.test", i), "org_01TEAM"), false)
			errc <- err
		}()
	}
	for range n {
		if err := <-errc; err != nil {
			t.Fatalf("concurrent first sign-in: %v", err)
		}
	}
	var orgs, users, owners int
	if err := s.pool.QueryRow(ctx, `SELECT count(DISTINCT o.id), count(*), count(*) FILTER (WHERE u.role = 'owner')
		FROM users u JOIN orgs o ON o.id = u.org_id WHERE o.workos_org_id = 'org_01TEAM'`).Scan(&orgs, &users, &owners); err != nil {
		t.Fatal(err)
	}
	if orgs != 1 || users != n || owners != 1 {
		t.Fatalf("team org: %d orgs, %d users, %d owners; want 1, %d, 1", orgs, users, owners, n)
	}

	// A member removed from the WorkOS organization signs in without it: refused.
	if _, _, err := s.ProvisionUser(ctx, verified("user_01T3", "t3@team.test", ""), true); !errors.Is(err, ErrNoOrganization) {
		t.Fatalf("member signing in outside the organization: %v, want ErrNoOrganization", err)
	}
	// One who moved to another WorkOS organization moves here too, as a member there.
	moved, movedOrg, err := s.ProvisionUser(ctx, verified("user_01T3", "t3@team.test", "org_01NEW"), false)
	if err != nil || movedOrg.ID == "" || moved.OrgID != movedOrg.ID || moved.Role != "owner" {
		t.Fatalf("moved user %+v org %+v: %v (first in the new org: owner)", moved, movedOrg, err)
	}
}
