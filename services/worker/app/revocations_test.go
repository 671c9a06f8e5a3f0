package app

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/opensandbox/opensandbox/services/shared/auth"
	"github.com/opensandbox/opensandbox/services/shared/natsx"
	"github.com/opensandbox/opensandbox/services/worker/sandboxtest"
)

// A worker that starts asks for the revocation list at once instead of
// waiting for the next round; when lists stop coming its view goes stale
// (keyed tokens refused) and it keeps asking until one comes again.
func TestWorkerFollowsRevocationLists(t *testing.T) {
	srv, err := natsx.StartEmbedded(natsx.EmbeddedOptions{Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	cp, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cp.Close)
	// The control plane's side: every request answered with a short-lived
	// list while answering is on.
	var answering atomic.Bool
	var asked atomic.Int32
	answering.Store(true)
	if _, err := cp.Subscribe(natsx.KeysRevokedSyncSubj, func(*nats.Msg) {
		asked.Add(1)
		if answering.Load() {
			b, _ := json.Marshal(auth.RevocationList{Keys: []auth.RevokedKey{{ID: "gone", RememberSec: 60}}, ValidForMs: 1500})
			cp.Publish(natsx.KeysRevokedSubj, b)
		}
	}); err != nil {
		t.Fatal(err)
	}
	cp.Flush()

	w, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	rev := auth.NewRevocations(nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		followRevocations(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), w, rev)
	}()
	t.Cleanup(func() { cancel(); <-done })

	// Well before the 2 s re-ask: the start-up request brought the list.
	sandboxtest.Eventually(t, time.Second, "the first list", rev.Fresh)
	if rev.Check("gone") == nil || rev.Check("live") != nil {
		t.Fatalf("after the first list: gone %v, live %v", rev.Check("gone"), rev.Check("live"))
	}
	// The control plane falls silent: the view goes stale, the worker asks again.
	answering.Store(false)
	sandboxtest.Eventually(t, 5*time.Second, "the view to go stale", func() bool { return !rev.Fresh() })
	before := asked.Load()
	sandboxtest.Eventually(t, 5*time.Second, "the worker to ask again", func() bool { return asked.Load() > before })
	// It answers again: fresh within one ask.
	answering.Store(true)
	sandboxtest.Eventually(t, 5*time.Second, "the view to be fresh again", rev.Fresh)
}
