package app

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/opensandbox/opensandbox/services/shared/auth"
	"github.com/opensandbox/opensandbox/services/shared/natsx"
	"github.com/prometheus/client_golang/prometheus"
)

// Bus is what a worker needs from NATS: publishing (heartbeats, requests
// for the revocation list) and hearing the control plane's revocation
// lists.
type Bus interface {
	Publish(subject string, data []byte) error
	Subscribe(subject string, cb nats.MsgHandler) (*nats.Subscription, error)
}

var _ Bus = (*nats.Conn)(nil)

// syncAskEvery is how often a worker whose revocation view is not fresh
// asks the control plane for the list (it also comes unasked, every
// OPENSANDBOX_REVOCATION_INTERVAL).
const syncAskEvery = 2 * time.Second

// revocationMetrics registers the view's gauges with reg.
func revocationMetrics(reg prometheus.Registerer, rev *auth.Revocations) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "opensandbox_revocation_list_age_seconds",
			Help: "Time since this worker's last list of revoked API keys (-1: none yet). Keyed sandbox tokens are refused while it is older than the list's validity (25 s).",
		}, func() float64 {
			if a := rev.Age(); a >= 0 {
				return a.Seconds()
			}
			return -1
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "opensandbox_revoked_keys", Help: "API keys this worker knows as revoked (their sandbox tokens are refused).",
		}, func() float64 { return float64(rev.Revoked()) }),
	)
}

// followRevocations keeps rev up to date from the control plane's lists on
// bus until ctx ends: it listens, asks for a list at once (a restarted
// worker need not wait for the next round), and asks again every few
// seconds while the view is not fresh.
func followRevocations(ctx context.Context, log *slog.Logger, bus Bus, rev *auth.Revocations) {
	sub, err := bus.Subscribe(natsx.KeysRevokedSubj, func(m *nats.Msg) {
		var l auth.RevocationList
		if err := json.Unmarshal(m.Data, &l); err != nil {
			log.Warn("undecodable revocation list", "err", err)
			return
		}
		before := rev.Revoked()
		rev.Apply(l)
		if n := rev.Revoked(); n != before {
			log.Info("revocation list applied", "revoked_keys", n)
		}
	})
	if err != nil {
		// NATS reconnects on its own; a subscription that failed up front
		// leaves the view stale, which refuses keyed tokens: say so.
		log.Error("cannot subscribe to revocation lists; keyed sandbox tokens will be refused", "err", err)
		return
	}
	defer sub.Unsubscribe()
	t := time.NewTicker(syncAskEvery)
	defer t.Stop()
	for {
		if !rev.Fresh() {
			if err := bus.Publish(natsx.KeysRevokedSyncSubj, nil); err != nil {
				log.Warn("ask for the revocation list", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
