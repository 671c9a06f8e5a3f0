// Package natsx holds the NATS names OpenSandbox services share, the roles
// they connect as (each with its own credentials and permissions), the event
// streams' policies, and an embedded JetStream server for combined mode,
// local development and tests.
package natsx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Subjects and stream names.
const (
	EventsStream     = "SANDBOX_EVENTS"
	EventsSubjects   = "sandbox.events.>"
	SyncConsumer     = "pg-sync-consumer"
	DeadLetterStream = "SANDBOX_DEADLETTER"
	DeadLetterSubj   = "sandbox.deadletter"
	HeartbeatSubjs   = "workers.heartbeat.>"
	// KeysRevokedSubj carries the control plane's list of revoked API keys
	// (auth.RevocationList) to every worker, periodically and on request.
	KeysRevokedSubj = "keys.revoked"
	// KeysRevokedSyncSubj is a worker asking for that list now (it just
	// started, or its list went stale); the body is empty.
	KeysRevokedSyncSubj = "keys.revoked.sync"
)

// EventSubject is where a worker publishes its sandbox events.
func EventSubject(region, workerID string) string {
	return "sandbox.events." + region + "." + workerID
}

// HeartbeatSubject is where a worker publishes its heartbeats.
func HeartbeatSubject(region, workerID string) string {
	return "workers.heartbeat." + region + "." + workerID
}

// Roles: the identities OpenSandbox services connect to NATS as. Each has
// its own credentials and only the permissions its work needs (see
// Permissions); the production NATS configuration
// (nomad/nats.nomad.hcl) grants the same.
const (
	RoleControlPlane = "controlplane" // heartbeats and revocation-list requests in, revocation lists out; in combined mode also the worker's events and the syncer
	RoleWorker       = "worker"       // heartbeats, its region's events and revocation-list requests out, revocation lists in
	RoleSyncer       = "syncer"       // consumes SANDBOX_EVENTS, dead-letters
)

// Roles lists every role.
var Roles = []string{RoleControlPlane, RoleWorker, RoleSyncer}

// InboxPrefix is the reply-subject prefix of a role's connections. Each role
// may subscribe only to its own inboxes, so no identity can read the
// replies another receives (JetStream delivers pulled events to the
// syncer's inbox).
func InboxPrefix(role string) string { return "_INBOX." + role }

// Permissions returns what a role may publish and subscribe to. A worker's
// events and heartbeats are confined to region ("" or "*": any region).
func Permissions(role, region string) *server.Permissions {
	if region == "" {
		region = "*"
	}
	inbox := []string{InboxPrefix(role) + ".>"}
	switch role {
	case RoleWorker:
		return &server.Permissions{
			Publish: &server.SubjectPermission{Allow: []string{
				EventSubject(region, "*"),
				HeartbeatSubject(region, "*"),
				// Its publisher checks that the stream exists; it never
				// creates, changes or reads it.
				"$JS.API.STREAM.INFO." + EventsStream,
				KeysRevokedSyncSubj,
			}},
			Subscribe: &server.SubjectPermission{Allow: append(inbox, KeysRevokedSubj)},
		}
	case RoleSyncer:
		return &server.Permissions{
			Publish: &server.SubjectPermission{Allow: []string{
				"$JS.API.STREAM.INFO." + EventsStream, "$JS.API.STREAM.CREATE." + EventsStream,
				"$JS.API.STREAM.INFO." + DeadLetterStream, "$JS.API.STREAM.CREATE." + DeadLetterStream,
				"$JS.API.CONSUMER.>", "$JS.ACK." + EventsStream + ".>", DeadLetterSubj,
			}},
			Subscribe: &server.SubjectPermission{Allow: inbox},
		}
	case RoleControlPlane:
		return &server.Permissions{
			Publish: &server.SubjectPermission{Allow: []string{
				EventsSubjects, DeadLetterSubj, "$JS.API.>", "$JS.ACK." + EventsStream + ".>", KeysRevokedSubj,
			}},
			Subscribe: &server.SubjectPermission{Allow: append(inbox, HeartbeatSubjs, KeysRevokedSyncSubj)},
		}
	}
	// An unknown role may do nothing.
	return &server.Permissions{Publish: &server.SubjectPermission{Deny: []string{">"}}, Subscribe: &server.SubjectPermission{Deny: []string{">"}}}
}

// User is one NATS identity of an embedded server.
type User struct {
	Name     string
	Password string // plain or bcrypt ("$2a$...")
	Role     string
	Region   string // workers only: the region whose subjects it may use ("": any)
}

// EmbeddedOptions configures an in-process NATS server.
type EmbeddedOptions struct {
	Host     string // default 127.0.0.1
	Port     int    // -1 picks a free port
	StoreDir string // JetStream storage; required
	// Users, when set, are the only identities the server accepts, each
	// with its role's permissions; without them it accepts anyone.
	Users []User
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
	opts := &server.Options{
		Host:      o.Host,
		Port:      o.Port,
		JetStream: true,
		StoreDir:  o.StoreDir,
		NoSigs:    true,
		NoLog:     true,
	}
	for _, u := range o.Users {
		if u.Name == "" || u.Password == "" {
			return nil, fmt.Errorf("natsx: user %q needs a name and a password", u.Name)
		}
		opts.Users = append(opts.Users, &server.User{Username: u.Name, Password: u.Password, Permissions: Permissions(u.Role, u.Region)})
	}
	srv, err := server.NewServer(opts)
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

// URLFor returns url with name and password as its credentials.
func URLFor(rawURL, name, password string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return rawURL
	}
	u.User = url.UserPassword(name, password)
	return u.String()
}

// UserFromURL returns the user name and password a NATS URL carries
// (nats://user:password@host:port), "" when it carries none.
func UserFromURL(rawURL string) (name, password string) {
	first, _, _ := strings.Cut(rawURL, ",")
	u, err := url.Parse(strings.TrimSpace(first))
	if err != nil || u.User == nil {
		return "", ""
	}
	password, _ = u.User.Password()
	return u.User.Username(), password
}

// Redact hides the credentials of a NATS URL (a list of them) for logs.
func Redact(rawURL string) string {
	parts := strings.Split(rawURL, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			u.User = url.User("redacted")
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}

// As makes a connection use role's inboxes (its permissions allow only those).
func As(role string) nats.Option { return nats.CustomInboxPrefix(InboxPrefix(role)) }

// Log reports a connection's troubles to log: disconnects, reconnects,
// permission violations, and failed (re)connect attempts such as refused
// credentials — at most one line per distinct error every 30 s, since
// attempts repeat every 250 ms.
func Log(log *slog.Logger) nats.Option {
	var (
		mu   sync.Mutex
		last = map[string]time.Time{}
	)
	report := func(msg string, err error) {
		mu.Lock()
		key := msg + err.Error()
		quiet := time.Since(last[key]) < 30*time.Second
		if !quiet {
			last[key] = time.Now()
		}
		mu.Unlock()
		if !quiet {
			log.Warn(msg, "err", err)
		}
	}
	return func(o *nats.Options) error {
		o.ConnectedCB = func(nc *nats.Conn) { log.Info("nats connected", "url", Redact(nc.ConnectedUrl())) }
		o.ReconnectedCB = func(nc *nats.Conn) { log.Info("nats reconnected", "url", Redact(nc.ConnectedUrl())) }
		o.DisconnectedErrCB = func(_ *nats.Conn, err error) {
			if err != nil {
				report("nats disconnected; reconnecting", err)
			}
		}
		o.ReconnectErrCB = func(_ *nats.Conn, err error) {
			if err != nil {
				report("nats connect attempt failed; retrying", err)
			}
		}
		o.AsyncErrorCB = func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if err != nil {
				report("nats error", err)
			}
		}
		return nil
	}
}

// Connect dials url and keeps reconnecting forever: callers ride out NATS
// restarts instead of failing. Credentials come with the URL
// (nats://user:password@host:4222, or nats://token@host:4222); a refused
// login is retried too, so a credential rotation or a server reloading its
// users does not close the connection for good.
func Connect(url, name string, opts ...nats.Option) (*nats.Conn, error) {
	return nats.Connect(url, append([]nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.IgnoreAuthErrorAbort(),
		nats.Timeout(5 * time.Second),
	}, opts...)...)
}

// StreamPolicy says how the event stream keeps what it holds.
type StreamPolicy struct {
	// Consumed: a syncer is expected (server mode, combined with
	// PostgreSQL). The stream is then a work queue that forgets an event
	// once the syncer acknowledged it, and refuses new events when full:
	// they wait in the workers' SQLite (the publisher retries) instead of
	// pushing out events nobody has written yet. Without it (combined mode
	// without PostgreSQL: nothing consumes) the oldest events go first.
	Consumed bool
	MaxAge   time.Duration // 0: no age limit
	MaxBytes int64
}

// DefaultEventsMaxBytes bounds a consumed stream: room for a long
// PostgreSQL outage (OPENSANDBOX_EVENTS_MAX_BYTES changes it).
const DefaultEventsMaxBytes int64 = 10 << 30

// ConsumedStream is the policy where a syncer consumes the stream.
func ConsumedStream(maxBytes int64) StreamPolicy {
	if maxBytes <= 0 {
		maxBytes = DefaultEventsMaxBytes
	}
	return StreamPolicy{Consumed: true, MaxBytes: maxBytes}
}

// UnconsumedStream keeps a week or 1 GiB of events, whichever is smaller,
// where nothing consumes them (combined mode without PostgreSQL).
var UnconsumedStream = StreamPolicy{MaxAge: 7 * 24 * time.Hour, MaxBytes: 1 << 30}

// EventStreamConfig is the SANDBOX_EVENTS configuration for a policy. Its
// duplicate window lets the event id (Nats-Msg-Id) collapse a worker's
// re-sends. Dead letters live in their own stream (DeadLetterStreamConfig),
// so they can never fill this one.
func EventStreamConfig(p StreamPolicy) jetstream.StreamConfig {
	cfg := jetstream.StreamConfig{
		Name:       EventsStream,
		Subjects:   []string{EventsSubjects},
		Storage:    jetstream.FileStorage,
		Retention:  jetstream.LimitsPolicy,
		MaxAge:     p.MaxAge,
		MaxBytes:   p.MaxBytes,
		Discard:    jetstream.DiscardOld,
		Duplicates: 10 * time.Minute,
	}
	if p.Consumed {
		cfg.Retention = jetstream.WorkQueuePolicy
		cfg.Discard = jetstream.DiscardNew
	}
	return cfg
}

// DeadLetterStreamConfig keeps dead-lettered events for inspection: bounded
// (30 days or 1 GiB, oldest dropped first) and apart from the event stream.
func DeadLetterStreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:      DeadLetterStream,
		Subjects:  []string{DeadLetterSubj},
		Storage:   jetstream.FileStorage,
		Retention: jetstream.LimitsPolicy,
		MaxAge:    30 * 24 * time.Hour,
		MaxBytes:  1 << 30,
		Discard:   jetstream.DiscardOld,
	}
}

// EnsureEventStream creates SANDBOX_EVENTS with p's policy if it does not
// exist. An existing stream is never changed, so components started with
// different views cannot flip its policy back and forth; a stream whose
// policy differs from p is logged.
func EnsureEventStream(ctx context.Context, log *slog.Logger, js jetstream.JetStream, p StreamPolicy) (jetstream.Stream, error) {
	return ensureStream(ctx, log, js, EventStreamConfig(p))
}

// EnsureDeadLetterStream creates the dead-letter stream if it does not exist.
func EnsureDeadLetterStream(ctx context.Context, log *slog.Logger, js jetstream.JetStream) (jetstream.Stream, error) {
	return ensureStream(ctx, log, js, DeadLetterStreamConfig())
}

func ensureStream(ctx context.Context, log *slog.Logger, js jetstream.JetStream, want jetstream.StreamConfig) (jetstream.Stream, error) {
	st, err := js.Stream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		st, err = js.CreateStream(ctx, want)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			st, err = js.Stream(ctx, want.Name) // created meanwhile by another component
		} else if err == nil {
			log.Info("created stream", "stream", want.Name, "retention", want.Retention.String(), "discard", want.Discard.String(), "max_bytes", want.MaxBytes, "max_age", want.MaxAge)
			return st, nil
		}
	}
	if err != nil {
		return nil, err
	}
	if diff := StreamDiff(st.CachedInfo().Config, want); diff != "" {
		log.Warn("stream exists with another policy; left as it is", "stream", want.Name, "differs", diff)
	}
	return st, nil
}

// StreamDiff describes how the policy of have differs from want ("" when
// it does not).
func StreamDiff(have, want jetstream.StreamConfig) string {
	var d []string
	if have.Retention != want.Retention {
		d = append(d, fmt.Sprintf("retention %s (want %s)", have.Retention, want.Retention))
	}
	if have.Discard != want.Discard {
		d = append(d, fmt.Sprintf("discard %s (want %s)", have.Discard, want.Discard))
	}
	if have.MaxBytes != want.MaxBytes {
		d = append(d, fmt.Sprintf("max bytes %d (want %d)", have.MaxBytes, want.MaxBytes))
	}
	if have.MaxAge != want.MaxAge {
		d = append(d, fmt.Sprintf("max age %s (want %s)", have.MaxAge, want.MaxAge))
	}
	if strings.Join(have.Subjects, ",") != strings.Join(want.Subjects, ",") {
		d = append(d, fmt.Sprintf("subjects %v (want %v)", have.Subjects, want.Subjects))
	}
	return strings.Join(d, "; ")
}
