// Package natsx holds the NATS names OpenSandbox services share and starts an
// embedded JetStream server for combined mode and tests.
package natsx

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Subjects and stream names.
const (
	EventsStream   = "SANDBOX_EVENTS"
	EventsSubjects = "sandbox.events.>"
	SyncConsumer   = "pg-sync-consumer"
	DeadLetterSubj = "sandbox.deadletter"
	HeartbeatSubjs = "workers.heartbeat.>"
)

// EventSubject is where a worker publishes its sandbox events.
func EventSubject(region, workerID string) string {
	return "sandbox.events." + region + "." + workerID
}

// HeartbeatSubject is where a worker publishes its heartbeats.
func HeartbeatSubject(region, workerID string) string {
	return "workers.heartbeat." + region + "." + workerID
}

// EmbeddedOptions configures an in-process NATS server.
type EmbeddedOptions struct {
	Host     string // default 127.0.0.1
	Port     int    // -1 picks a free port
	StoreDir string // JetStream storage; required
}

// StartEmbedded starts a NATS server with JetStream and waits until it accepts
// connections.
func StartEmbedded(o EmbeddedOptions) (*server.Server, error) {
	if o.StoreDir == "" {
		return nil, errors.New("natsx: StoreDir is required")
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	srv, err := server.NewServer(&server.Options{
		Host:      o.Host,
		Port:      o.Port,
		JetStream: true,
		StoreDir:  o.StoreDir,
		NoSigs:    true,
		NoLog:     true,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("embedded nats did not start within 10s")
	}
	return srv, nil
}

// Connect dials url and keeps reconnecting forever: callers ride out NATS
// restarts instead of failing.
func Connect(url, name string) (*nats.Conn, error) {
	return nats.Connect(url,
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.Timeout(5*time.Second),
	)
}

// StreamLimits bound the event stream so nothing grows without limit when no
// syncer consumes it (combined mode without PostgreSQL).
type StreamLimits struct {
	MaxAge   time.Duration
	MaxBytes int64
}

// DefaultStreamLimits keep a week or 1 GiB of events, whichever is smaller.
var DefaultStreamLimits = StreamLimits{MaxAge: 7 * 24 * time.Hour, MaxBytes: 1 << 30}

// EnsureEventStream creates or updates the SANDBOX_EVENTS stream. Its duplicate
// window lets the event id (Nats-Msg-Id) collapse a worker's re-sends.
func EnsureEventStream(ctx context.Context, js jetstream.JetStream, lim StreamLimits) (jetstream.Stream, error) {
	return js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:       EventsStream,
		Subjects:   []string{EventsSubjects, DeadLetterSubj},
		Storage:    jetstream.FileStorage,
		Retention:  jetstream.LimitsPolicy,
		MaxAge:     lim.MaxAge,
		MaxBytes:   lim.MaxBytes,
		Discard:    jetstream.DiscardOld,
		Duplicates: 10 * time.Minute,
	})
}
