package autoscaler

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/opensandbox/opensandbox/services/shared/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// Two control planes' scalers on one PostgreSQL: only one acts per region;
// when it goes away the other takes over.
func TestPGLeaderOneScalerActs(t *testing.T) {
	conf, err := pgx.ParseConfig(pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pool := &memPool{}
	fl := &fleet{current: map[string]int{}, draining: map[string]bool{}}
	leaders := []*PGLeader{NewPGLeader(quiet, conf.Copy()), NewPGLeader(quiet, conf.Copy())}
	t.Cleanup(func() { leaders[0].Close(); leaders[1].Close() })
	var scalers []*Scaler
	for _, l := range leaders {
		s, err := New(quiet, Config{Min: 1, Max: 5}, pool, fl, fl, l, nil)
		if err != nil {
			t.Fatal(err)
		}
		scalers = append(scalers, s)
	}
	for range 3 {
		for _, s := range scalers {
			s.Step(ctx, "eu")
		}
	}
	if len(pool.calls) != 1 || pool.calls[0] != "launch m1" {
		t.Fatalf("pool calls %v: want one launch by one scaler", pool.calls)
	}
	if !scalers[0].State()[0].Leader || scalers[1].State()[0].Leader {
		t.Fatal("the first scaler should lead, the second follow")
	}
	// Another region is a separate election.
	if !leaders[1].Lead(ctx, "us") || leaders[0].Lead(ctx, "us") {
		t.Fatal("region us: the second asked first and should lead")
	}
	leaders[0].Close() // the leader's control plane goes away
	if !leaders[1].Lead(ctx, "eu") {
		t.Fatal("the follower did not take over")
	}
}
