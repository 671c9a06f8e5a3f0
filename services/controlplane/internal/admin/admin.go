// Package admin is the `opensandbox-server admin` command line: migrations,
// orgs and API keys in PostgreSQL, and the development seed.
package admin

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/opensandbox/opensandbox/services/controlplane/internal/keyauth"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/store"
	"github.com/opensandbox/opensandbox/services/shared/pgschema"
)

// Seed values: the handoff's Tier 2 and Tier 3 use X-API-Key: test-key.
const (
	SeedOrg = "test"
	SeedKey = "test-key"
)

const usage = `usage: opensandbox-server admin COMMAND [flags]

commands:
  migrate                         apply the schema migrations the database lacks
  create-org -slug S [-name N] [-max-sandboxes N] [-max-timeout SECONDS] [-plan P]
  set-quota  -org SLUG [-max-sandboxes N] [-max-timeout SECONDS]
  create-key -org SLUG [-name N] [-scopes a,b] [-expires DURATION] [-key VALUE]
                                  scopes: sandboxes:write (default), sandboxes:read, admin
                                  prints the new key once; only its hash is stored
  revoke-key ID|PREFIX
  list-keys  -org SLUG
  seed                            org "test" with key "test-key" (idempotent)
  nats-credentials                prints the nomad var put commands of a region's NATS users
                                  (random passwords; the NATS job gets bcrypt hashes only)

The database is $DATABASE_URL (make infra-up writes it to .env.local).
`

// Run runs one admin command.
func Run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "help" || args[0] == "--help" {
		fmt.Fprint(stdout, usage)
		return nil
	}
	if args[0] == "nats-credentials" {
		return natsCredentials(stdout)
	}
	dsn := os.Getenv("DATABASE_URL")
	if dsn == "" {
		return errors.New("DATABASE_URL is not set (run `make infra-up`, which writes it to .env.local)")
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd, rest := args[0], args[1:]
	st, err := store.Open(ctx, dsn, true)
	if err != nil {
		return err
	}
	defer st.Close()
	c := &cli{st: st, out: stdout}
	switch cmd {
	case "migrate":
		fmt.Fprintf(stdout, "schema at version %d\n", pgschema.Latest())
		return nil
	case "create-org":
		return c.createOrg(ctx, rest)
	case "set-quota":
		return c.setQuota(ctx, rest)
	case "create-key":
		return c.createKey(ctx, rest)
	case "revoke-key":
		return c.revokeKey(ctx, rest)
	case "list-keys":
		return c.listKeys(ctx, rest)
	case "seed":
		return c.seed(ctx)
	default:
		return fmt.Errorf("unknown admin command %q\n%s", cmd, usage)
	}
}

type cli struct {
	st  *store.Store
	out io.Writer
}

func flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

func (c *cli) createOrg(ctx context.Context, args []string) error {
	fs := flags("create-org")
	slug := fs.String("slug", "", "org slug (unique)")
	name := fs.String("name", "", "display name (default: the slug)")
	plan := fs.String("plan", "free", "plan")
	maxSB := fs.Int("max-sandboxes", 10, "concurrent sandboxes")
	maxTO := fs.Int("max-timeout", 3600, "longest sandbox lifetime, seconds")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *slug == "" {
		return errors.New("create-org: -slug is required")
	}
	if *name == "" {
		*name = *slug
	}
	o, err := c.st.CreateOrg(ctx, store.Org{Name: *name, Slug: *slug, Plan: *plan, MaxConcurrentSandboxes: *maxSB, MaxSandboxTimeoutSec: *maxTO})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.out, "org %s (%s): %d concurrent sandboxes, %ds max timeout\n", o.Slug, o.ID, o.MaxConcurrentSandboxes, o.MaxSandboxTimeoutSec)
	return nil
}

func (c *cli) setQuota(ctx context.Context, args []string) error {
	fs := flags("set-quota")
	slug := fs.String("org", "", "org slug")
	maxSB := fs.Int("max-sandboxes", -1, "concurrent sandboxes")
	maxTO := fs.Int("max-timeout", -1, "longest sandbox lifetime, seconds")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o, err := c.st.OrgBySlug(ctx, *slug)
	if err != nil {
		return fmt.Errorf("org %q: %w", *slug, err)
	}
	if *maxSB >= 0 {
		o.MaxConcurrentSandboxes = *maxSB
	}
	if *maxTO > 0 {
		o.MaxSandboxTimeoutSec = *maxTO
	}
	if err := c.st.UpdateOrgQuota(ctx, o.ID, o.MaxConcurrentSandboxes, o.MaxSandboxTimeoutSec); err != nil {
		return err
	}
	fmt.Fprintf(c.out, "org %s: %d concurrent sandboxes, %ds max timeout\n", o.Slug, o.MaxConcurrentSandboxes, o.MaxSandboxTimeoutSec)
	return nil
}

func (c *cli) createKey(ctx context.Context, args []string) error {
	fs := flags("create-key")
	slug := fs.String("org", "", "org slug")
	name := fs.String("name", "", "key name")
	scopes := fs.String("scopes", "sandboxes:write", "comma-separated: sandboxes:write, sandboxes:read, admin (GET /workers)")
	expires := fs.Duration("expires", 0, "lifetime, e.g. 720h (0: never)")
	key := fs.String("key", "", "use this key instead of a random osb_ key (development only)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o, err := c.st.OrgBySlug(ctx, *slug)
	if err != nil {
		return fmt.Errorf("org %q: %w", *slug, err)
	}
	if *key == "" {
		*key = store.NewKey()
	}
	k := store.APIKey{OrgID: o.ID, Name: *name, Prefix: store.VisiblePrefix(*key), Scopes: strings.Split(*scopes, ",")}
	if *expires > 0 {
		t := time.Now().Add(*expires)
		k.ExpiresAt = &t
	}
	k, err = c.st.CreateAPIKey(ctx, k, store.HashKey(*key))
	if err != nil {
		return err
	}
	fmt.Fprintf(c.out, "key %s for org %s (id %s, scopes %s)\n%s\n", k.Prefix, o.Slug, k.ID, strings.Join(k.Scopes, ","), *key)
	return nil
}

func (c *cli) revokeKey(ctx context.Context, args []string) error {
	if len(args) != 1 {
		return errors.New("revoke-key: give the key's id or visible prefix")
	}
	k, err := c.st.RevokeKey(ctx, args[0])
	if err != nil {
		return fmt.Errorf("revoke-key %s: %w", args[0], err)
	}
	fmt.Fprintf(c.out, "revoked key %s (id %s)\n", k.Prefix, k.ID)
	return nil
}

func (c *cli) listKeys(ctx context.Context, args []string) error {
	fs := flags("list-keys")
	slug := fs.String("org", "", "org slug")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o, err := c.st.OrgBySlug(ctx, *slug)
	if err != nil {
		return fmt.Errorf("org %q: %w", *slug, err)
	}
	keys, err := c.st.ListKeys(ctx, o.ID)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPREFIX\tNAME\tSCOPES\tLAST USED\tEXPIRES\tSTATE")
	for _, k := range keys {
		state := "active"
		switch {
		case k.RevokedAt != nil:
			state = "revoked"
		case k.ExpiresAt != nil && time.Now().After(*k.ExpiresAt):
			state = "expired"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Prefix, k.Name, strings.Join(k.Scopes, ","), when(k.LastUsed), when(k.ExpiresAt), state)
	}
	return tw.Flush()
}

func when(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// seed creates the development org and key; running it again changes nothing.
func (c *cli) seed(ctx context.Context) error {
	o, err := c.st.CreateOrg(ctx, store.Org{Name: "Test org", Slug: SeedOrg, MaxConcurrentSandboxes: 10, MaxSandboxTimeoutSec: 86400})
	if errors.Is(err, store.ErrExists) {
		o, err = c.st.OrgBySlug(ctx, SeedOrg)
	}
	if err != nil {
		return err
	}
	// The development key may also see the worker registry (GET /workers).
	scopes := []string{keyauth.ScopeWrite, keyauth.ScopeAdmin}
	_, err = c.st.CreateAPIKey(ctx, store.APIKey{OrgID: o.ID, Name: "seed", Prefix: store.VisiblePrefix(SeedKey),
		Scopes: scopes}, store.HashKey(SeedKey))
	switch {
	case errors.Is(err, store.ErrExists):
		// A key seeded by an older version lacks the admin scope.
		if _, err := c.st.AddKeyScopes(ctx, store.HashKey(SeedKey), scopes); err != nil {
			return err
		}
		fmt.Fprintf(c.out, "seed: org %q and key %q already exist\n", SeedOrg, SeedKey)
		return nil
	case err != nil:
		return err
	}
	fmt.Fprintf(c.out, "seed: org %q (%d concurrent sandboxes) with API key %q\n", SeedOrg, o.MaxConcurrentSandboxes, SeedKey)
	return nil
}
