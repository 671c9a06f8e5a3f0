package admin

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/opensandbox/opensandbox/services/controlplane/internal/store"
	"github.com/opensandbox/opensandbox/services/shared/natsx"
	"github.com/opensandbox/opensandbox/services/shared/pgtest"
	"golang.org/x/crypto/bcrypt"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func run(t *testing.T, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	if err := Run(context.Background(), args, &out); err != nil {
		t.Fatalf("admin %v: %v", args, err)
	}
	return out.String()
}

func TestAdminCommands(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	t.Setenv("DATABASE_URL", dsn)
	if out := run(t, "seed"); !strings.Contains(out, `API key "test-key"`) {
		t.Fatalf("seed: %s", out)
	}
	st, err := store.Open(context.Background(), dsn, false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// A seed key of an older version (no admin scope) gets it on the next seed.
	if _, err := st.Pool().Exec(context.Background(), `UPDATE api_keys SET scopes = '{sandboxes:write}'`); err != nil {
		t.Fatal(err)
	}
	if out := run(t, "seed"); !strings.Contains(out, "already exist") {
		t.Fatalf("second seed: %s", out)
	}
	if owner, err := st.KeyByHash(context.Background(), store.HashKey(SeedKey)); err != nil || !slices.Equal(owner.Key.Scopes, []string{"admin", "sandboxes:write"}) {
		t.Fatalf("seed key scopes %v %v", owner.Key.Scopes, err)
	}
	run(t, "create-org", "-slug", "acme", "-max-sandboxes", "3", "-max-timeout", "600")
	out := run(t, "create-key", "-org", "acme", "-name", "ci", "-expires", "720h")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	key := lines[len(lines)-1]
	if !strings.HasPrefix(key, "osb_") || len(key) != 44 {
		t.Fatalf("create-key printed %q", out)
	}
	ctx := context.Background()
	for _, k := range []string{key, "test-key"} {
		owner, err := st.KeyByHash(ctx, store.HashKey(k))
		if err != nil || owner.Key.RevokedAt != nil {
			t.Fatalf("key %s: %+v %v", store.VisiblePrefix(k), owner, err)
		}
	}
	run(t, "set-quota", "-org", "acme", "-max-sandboxes", "7")
	if o, _ := st.OrgBySlug(ctx, "acme"); o.MaxConcurrentSandboxes != 7 || o.MaxSandboxTimeoutSec != 600 {
		t.Fatalf("quota %+v", o)
	}
	if out := run(t, "list-keys", "-org", "acme"); !strings.Contains(out, store.VisiblePrefix(key)) || !strings.Contains(out, "active") || strings.Contains(out, key) {
		t.Fatalf("list-keys: %s", out)
	}
	run(t, "revoke-key", store.VisiblePrefix(key))
	if out := run(t, "list-keys", "-org", "acme"); !strings.Contains(out, "revoked") {
		t.Fatalf("list after revoke: %s", out)
	}
	var out2 bytes.Buffer
	for _, args := range [][]string{{"revoke-key", store.VisiblePrefix(key)}, {"create-key", "-org", "nope"}, {"bogus"}, {"create-org"}} {
		if err := Run(ctx, args, &out2); err == nil {
			t.Errorf("admin %v succeeded", args)
		}
	}
	if out := run(t, "help"); !strings.Contains(out, "create-key") {
		t.Fatalf("help: %s", out)
	}
}

// nats-credentials prints a password per role and the bcrypt hashes the NATS
// server checks them against.
func TestNATSCredentials(t *testing.T) {
	out := run(t, "nats-credentials")
	hashes := map[string]string{}
	passwords := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) > 4 && f[3] == "nomad/jobs/nats":
			for _, kv := range f[4:] {
				k, v, _ := strings.Cut(kv, "=")
				hashes[strings.TrimSuffix(k, "_password_bcrypt")] = strings.Trim(v, "'")
			}
		case len(f) == 5 && strings.HasPrefix(f[3], "nomad/jobs/opensandbox-"):
			passwords[strings.TrimPrefix(f[3], "nomad/jobs/opensandbox-")] = strings.TrimPrefix(f[4], "nats_password=")
		}
	}
	for _, role := range natsx.Roles {
		if bcrypt.CompareHashAndPassword([]byte(hashes[role]), []byte(passwords[role])) != nil {
			t.Errorf("role %s: hash %q does not match password %q\n%s", role, hashes[role], passwords[role], out)
		}
	}
}
