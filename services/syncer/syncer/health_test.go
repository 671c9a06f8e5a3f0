package syncer

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/opensandbox/opensandbox/services/shared/natsx"
	"github.com/prometheus/client_golang/prometheus"
)

// An idle syncer that lost NATS for a moment is healthy again as soon as
// it can fetch (nothing to write is no failure), and its unauthenticated
// /health never carries error text.
func TestIdleSyncerRecoversAfterTransientFetchError(t *testing.T) {
	pool := newPool(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	store := t.TempDir()
	start := func() *server.Server {
		srv, err := natsx.StartEmbedded(natsx.EmbeddedOptions{Port: port, StoreDir: store})
		if err != nil {
			t.Fatal(err)
		}
		return srv
	}
	srv := start()
	nc, err := natsx.Connect(srv.ClientURL(), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	cfg := DefaultConfig()
	cfg.MaxWait = 50 * time.Millisecond
	s := New(slog.New(slog.NewTextHandler(io.Discard, nil)), js, pool, cfg, NewMetrics(prometheus.NewRegistry()))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	h := httptest.NewServer(s.Handler(prometheus.NewRegistry()))
	defer h.Close()

	waitOK := func(want bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for s.Status(context.Background()).OK != want {
			if time.Now().After(deadline) {
				t.Fatalf("syncer ok=%v after 20s, want %v: %+v", !want, want, s.Status(context.Background()))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for { // consuming
		if _, err := js.Consumer(context.Background(), natsx.EventsStream, natsx.SyncConsumer); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the syncer set up no consumer")
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitOK(true)
	srv.Shutdown()
	srv.WaitForShutdown()
	waitOK(false)
	resp, err := http.Get(h.URL + "/health")
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Sync map[string]any `json:"sync"`
	}
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/health while NATS is down: %d", resp.StatusCode)
	}
	if _, ok := body.Sync["lastError"]; ok || s.Status(context.Background()).LastError == "" {
		t.Fatalf("unauthenticated /health shows the error text (or there is none): %v", body.Sync)
	}
	srv = start()
	defer srv.Shutdown()
	waitOK(true) // idle: no batch is ever written
	resp, err = http.Get(h.URL + "/health")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"ok":true`) {
		t.Fatalf("/health after recovery: %d %s", resp.StatusCode, b)
	}
}
