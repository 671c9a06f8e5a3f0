// Package publishertest gives tests publishers in known states.
package publishertest

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/opensandbox/opensandbox/services/shared/natsx"
	"github.com/opensandbox/opensandbox/services/worker/publisher"
	"github.com/prometheus/client_golang/prometheus"
)

// Failing returns a running publisher whose every round fails (its NATS
// connection is closed), once its status carries the error. It stops at
// the test's cleanup.
func Failing(t testing.TB) *publisher.Publisher {
	t.Helper()
	srv, err := natsx.StartEmbedded(natsx.EmbeddedOptions{Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := natsx.Connect(srv.ClientURL(), "test")
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	pub, err := publisher.New(slog.New(slog.NewTextHandler(io.Discard, nil)), js,
		publisher.Config{DataDir: t.TempDir(), Subject: natsx.EventSubject("eu", "w1")}, publisher.NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); pub.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for deadline := time.Now().Add(10 * time.Second); pub.Status().LastError == ""; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the publisher reports no error")
		}
	}
	return pub
}
