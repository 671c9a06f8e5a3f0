package keyauth

import (
	"context"
	"log/slog"
	"time"

	"github.com/opensandbox/opensandbox/services/controlplane/internal/store"
	"github.com/opensandbox/opensandbox/services/shared/auth"
	"github.com/prometheus/client_golang/prometheus"
)

// Revocation timing: lists go out every DefaultRevocationInterval (and at
// once when a worker asks); a receiver trusts one for validFor, never more
// than MaxRevocationValidity, so a revoked key's tokens stop working within
// that time even when the control plane, PostgreSQL or NATS fails.
const (
	DefaultRevocationInterval = 5 * time.Second
	MaxRevocationInterval     = 10 * time.Second
	MaxRevocationValidity     = 25 * time.Second
)

// RevocationValidity is how long a list sent every interval stays valid:
// five rounds (a few lost lists do not matter), at most MaxRevocationValidity.
func RevocationValidity(interval time.Duration) time.Duration {
	return min(5*interval, MaxRevocationValidity)
}

// RevokedKeys lists recently revoked keys (the store).
type RevokedKeys interface {
	RevokedKeys(ctx context.Context, window time.Duration) ([]store.RevokedKey, error)
}

var _ RevokedKeys = (*store.Store)(nil)

// Announcer reads the keys revoked within auth.MaxTokenLifetime from
// PostgreSQL and delivers the whole list every interval and on Ask: to the
// workers over NATS (server mode), or to the process's own view (combined
// mode). Revocations happen anywhere (the admin command, the dashboard, SQL):
// reading the table is what finds them all.
type Announcer struct {
	log      *slog.Logger
	keys     RevokedKeys
	deliver  func(auth.RevocationList) error
	interval time.Duration
	ask      chan struct{}
	results  *prometheus.CounterVec
	last     int // keys in the last list, to log changes
}

// NewAnnouncer returns an announcer; deliver sends a list on.
func NewAnnouncer(log *slog.Logger, reg prometheus.Registerer, keys RevokedKeys, interval time.Duration, deliver func(auth.RevocationList) error) *Announcer {
	a := &Announcer{log: log, keys: keys, deliver: deliver, interval: interval, ask: make(chan struct{}, 1),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "opensandbox_revocation_lists_total",
			Help: "Lists of revoked API keys announced, by result (ok; store or deliver: failed there).",
		}, []string{"result"})}
	reg.MustRegister(a.results)
	return a
}

// Ask makes the announcer send a list now (a worker asked for one). Asks
// that arrive while one is pending collapse into it.
func (a *Announcer) Ask() {
	select {
	case a.ask <- struct{}{}:
	default:
	}
}

// Run announces until ctx ends, the first list at once.
func (a *Announcer) Run(ctx context.Context) {
	t := time.NewTicker(a.interval)
	defer t.Stop()
	for {
		a.announce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.ask:
			// Many workers starting together ask at once: one list a
			// tenth of a second is plenty.
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

func (a *Announcer) announce(ctx context.Context) {
	start := time.Now()
	qctx, cancel := context.WithTimeout(ctx, a.interval)
	keys, err := a.keys.RevokedKeys(qctx, auth.MaxTokenLifetime)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			a.results.WithLabelValues("store").Inc()
			a.log.Warn("read revoked API keys; workers keep their last list until it runs out", "err", err)
		}
		return
	}
	l := auth.RevocationList{Keys: make([]auth.RevokedKey, 0, len(keys)),
		// Counted from the read: a list delivered late is trusted less.
		ValidForMs: (RevocationValidity(a.interval) - time.Since(start)).Milliseconds()}
	for _, k := range keys {
		remember := auth.MaxTokenLifetime - k.Ago + time.Minute // a minute for clocks and delays
		l.Keys = append(l.Keys, auth.RevokedKey{ID: k.ID, RememberSec: int64(remember.Seconds())})
	}
	if err := a.deliver(l); err != nil {
		a.results.WithLabelValues("deliver").Inc()
		a.log.Warn("announce revoked API keys", "err", err)
		return
	}
	a.results.WithLabelValues("ok").Inc()
	if len(l.Keys) != a.last {
		a.last = len(l.Keys)
		a.log.Info("revoked API keys announced", "keys", len(l.Keys))
	}
}
