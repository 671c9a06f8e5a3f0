package natsx

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func ctx10(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// openJetStream starts a server without authentication and connects to it.
func openJetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	srv, err := StartEmbedded(EmbeddedOptions{Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := Connect(srv.ClientURL(), "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func TestEmbeddedStreamCollapsesDuplicateIDs(t *testing.T) {
	js := openJetStream(t)
	ctx := ctx10(t)
	st, err := EnsureEventStream(ctx, quiet, js, UnconsumedStream)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		msg := nats.NewMsg(EventSubject("eu", "w1"))
		msg.Data = []byte(`{}`)
		msg.Header.Set(jetstream.MsgIDHeader, "event-1")
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("stream has %d messages, want 1 (duplicates collapse)", info.State.Msgs)
	}
}

// A consumed stream that is full refuses new events instead of dropping
// unconsumed ones; an existing stream's policy is never changed by a
// component that wants another.
func TestConsumedStreamRefusesWhenFullAndIsNeverOverwritten(t *testing.T) {
	js := openJetStream(t)
	ctx := ctx10(t)
	st, err := EnsureEventStream(ctx, quiet, js, ConsumedStream(2048))
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	for i := range 40 {
		msg := nats.NewMsg(EventSubject("eu", "w1"))
		msg.Data = []byte(strings.Repeat("x", 100))
		msg.Header.Set(jetstream.MsgIDHeader, "event-"+string(rune('a'+i)))
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			refused++
		}
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if refused == 0 || info.State.FirstSeq != 1 {
		t.Fatalf("full stream: %d publishes refused, first seq %d; want refusals and nothing dropped", refused, info.State.FirstSeq)
	}
	// Another component asking for the unconsumed policy leaves it alone.
	st, err = EnsureEventStream(ctx, quiet, js, UnconsumedStream)
	if err != nil {
		t.Fatal(err)
	}
	if c := st.CachedInfo().Config; c.Retention != jetstream.WorkQueuePolicy || c.Discard != jetstream.DiscardNew || c.MaxBytes != 2048 {
		t.Fatalf("stream policy changed to %v/%v/%d", c.Retention, c.Discard, c.MaxBytes)
	}
	if d := StreamDiff(st.CachedInfo().Config, EventStreamConfig(UnconsumedStream)); !strings.Contains(d, "retention") {
		t.Fatalf("diff %q", d)
	}
	// Dead letters have a stream of their own.
	if _, err := EnsureDeadLetterStream(ctx, quiet, js); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, DeadLetterSubj, []byte("x")); err != nil {
		t.Fatalf("dead letter refused while the event stream is full: %v", err)
	}
}

// authServer starts a server that knows one user per role.
func authServer(t *testing.T) (*server.Server, map[string]string) {
	t.Helper()
	srv, err := StartEmbedded(EmbeddedOptions{Port: -1, StoreDir: t.TempDir(), Users: []User{
		{Name: "cp", Password: "cp-pass", Role: RoleControlPlane},
		{Name: "w", Password: "w-pass", Role: RoleWorker, Region: "eu"},
		{Name: "s", Password: "s-pass", Role: RoleSyncer},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	u := srv.ClientURL()
	return srv, map[string]string{
		RoleControlPlane: URLFor(u, "cp", "cp-pass"), RoleWorker: URLFor(u, "w", "w-pass"), RoleSyncer: URLFor(u, "s", "s-pass"),
	}
}

// connectAs connects as role and collects the server's asynchronous errors
// (permission violations).
func connectAs(t *testing.T, url, role string) (*nats.Conn, chan error) {
	t.Helper()
	errc := make(chan error, 16)
	nc, err := nats.Connect(url, As(role), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case errc <- err:
		default:
		}
	}))
	if err != nil {
		t.Fatalf("connect as %s: %v", role, err)
	}
	t.Cleanup(nc.Close)
	return nc, errc
}

func wantViolation(t *testing.T, errc chan error, what string) {
	t.Helper()
	select {
	case err := <-errc:
		if !errors.Is(err, nats.ErrPermissionViolation) && !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
			t.Fatalf("%s: error %v, want a permissions violation", what, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: no permissions violation", what)
	}
}

func TestCredentialsAndRolePermissions(t *testing.T) {
	srv, urls := authServer(t)

	// No credentials, or wrong ones: refused.
	if nc, err := nats.Connect(srv.ClientURL()); err == nil {
		nc.Close()
		t.Fatal("a client without credentials was accepted")
	} else if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("no credentials: %v, want an authorization violation", err)
	}
	if nc, err := nats.Connect(URLFor(srv.ClientURL(), "w", "guess")); err == nil {
		nc.Close()
		t.Fatal("a wrong password was accepted")
	}

	ctx := ctx10(t)
	cp, _ := connectAs(t, urls[RoleControlPlane], RoleControlPlane)
	cpJS, _ := jetstream.New(cp)
	if _, err := EnsureEventStream(ctx, quiet, cpJS, ConsumedStream(1<<20)); err != nil {
		t.Fatalf("control plane creates the stream: %v", err)
	}
	beats, err := cp.SubscribeSync(HeartbeatSubjs)
	if err != nil {
		t.Fatal(err)
	}
	cp.Flush()

	// The worker identity: heartbeats and events of its region, through
	// Connect (credentials in the URL).
	w, err := Connect(urls[RoleWorker], "worker", As(RoleWorker))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	wJS, _ := jetstream.New(w)
	if err := w.Publish(HeartbeatSubject("eu", "w1"), []byte("beat")); err != nil {
		t.Fatal(err)
	}
	if _, err := beats.NextMsg(5 * time.Second); err != nil {
		t.Fatalf("control plane got no heartbeat: %v", err)
	}
	if _, err := EnsureEventStream(ctx, quiet, wJS, ConsumedStream(1<<20)); err != nil {
		t.Fatalf("worker looks the stream up: %v", err)
	}
	if _, err := wJS.Publish(ctx, EventSubject("eu", "w1"), []byte(`{}`)); err != nil {
		t.Fatalf("worker publishes its event: %v", err)
	}
	// Revocation lists: a worker asks, the control plane answers to all.
	syncs, err := cp.SubscribeSync(KeysRevokedSyncSubj)
	if err != nil {
		t.Fatal(err)
	}
	lists, err := w.SubscribeSync(KeysRevokedSubj)
	if err != nil {
		t.Fatal(err)
	}
	cp.Flush()
	w.Flush()
	if err := w.Publish(KeysRevokedSyncSubj, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := syncs.NextMsg(5 * time.Second); err != nil {
		t.Fatalf("control plane got no revocation-list request: %v", err)
	}
	if err := cp.Publish(KeysRevokedSubj, []byte(`{"keys":[]}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := lists.NextMsg(5 * time.Second); err != nil {
		t.Fatalf("worker got no revocation list: %v", err)
	}

	// What a worker identity must not do.
	wv, werrs := connectAs(t, urls[RoleWorker], RoleWorker)
	if _, err := wv.SubscribeSync(EventsSubjects); err != nil {
		t.Fatal(err)
	}
	wantViolation(t, werrs, "worker subscribes to sandbox.events.>")
	if _, err := wv.SubscribeSync(HeartbeatSubjs); err != nil {
		t.Fatal(err)
	}
	wantViolation(t, werrs, "worker subscribes to heartbeats")
	if _, err := wv.SubscribeSync("_INBOX." + RoleSyncer + ".>"); err != nil {
		t.Fatal(err)
	}
	wantViolation(t, werrs, "worker subscribes to the syncer's inbox")
	wv.Publish(EventSubject("us", "w1"), []byte(`{}`))
	wantViolation(t, werrs, "worker publishes another region's events")
	wv.Publish(HeartbeatSubject("us", "w9"), []byte(`{}`))
	wantViolation(t, werrs, "worker publishes another region's heartbeat")
	wv.Publish("$JS.API.STREAM.DELETE."+EventsStream, nil)
	wantViolation(t, werrs, "worker deletes the stream")
	wv.Publish(KeysRevokedSubj, []byte(`{"keys":[],"validForMs":86400000}`))
	wantViolation(t, werrs, "worker forges a revocation list")
	wv.Publish("$JS.API.CONSUMER.MSG.NEXT."+EventsStream+"."+SyncConsumer, nil)
	wantViolation(t, werrs, "worker pulls events")

	// The syncer consumes; it hears no heartbeats.
	s, serrs := connectAs(t, urls[RoleSyncer], RoleSyncer)
	sJS, _ := jetstream.New(s)
	cons, err := sJS.CreateOrUpdateConsumer(ctx, EventsStream, jetstream.ConsumerConfig{Durable: SyncConsumer, AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: EventsSubjects})
	if err != nil {
		t.Fatalf("syncer creates its consumer: %v", err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for m := range batch.Messages() {
		if err := m.Ack(); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 1 {
		t.Fatalf("syncer fetched %d events, want 1 (%v)", n, batch.Error())
	}
	if _, err := EnsureDeadLetterStream(ctx, quiet, sJS); err != nil {
		t.Fatalf("syncer creates the dead-letter stream: %v", err)
	}
	if _, err := s.SubscribeSync(HeartbeatSubjs); err != nil {
		t.Fatal(err)
	}
	wantViolation(t, serrs, "syncer subscribes to heartbeats")
	s.Publish(EventSubject("eu", "w1"), []byte(`{}`))
	wantViolation(t, serrs, "syncer forges an event")
}

func TestURLHelpers(t *testing.T) {
	u := URLFor("nats://127.0.0.1:4222", "worker", "s3cret")
	if u != "nats://worker:s3cret@127.0.0.1:4222" {
		t.Fatalf("URLFor: %s", u)
	}
	if n, p := UserFromURL(u + ",nats://worker:s3cret@127.0.0.2:4222"); n != "worker" || p != "s3cret" {
		t.Fatalf("UserFromURL: %q %q", n, p)
	}
	if r := Redact(u); strings.Contains(r, "s3cret") {
		t.Fatalf("Redact kept the password: %s", r)
	}
}

// recordLog keeps the messages logged through it.
type recordLog struct {
	mu   sync.Mutex
	msgs []string
}

func (r *recordLog) Enabled(context.Context, slog.Level) bool { return true }
func (r *recordLog) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	msg := rec.Message
	rec.Attrs(func(a slog.Attr) bool { msg += " " + a.Value.String(); return true })
	r.msgs = append(r.msgs, msg)
	return nil
}
func (r *recordLog) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recordLog) WithGroup(string) slog.Handler      { return r }

func (r *recordLog) has(sub string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.msgs {
		if strings.Contains(strings.ToLower(m), sub) {
			return true
		}
	}
	return false
}

// A service started with a wrong NATS password keeps retrying (a fixed
// password or a reloaded server lets it in) and says why in its log.
func TestConnectLogsRefusedCredentials(t *testing.T) {
	srv, urls := authServer(t)
	rec := &recordLog{}
	nc, err := Connect(URLFor(srv.ClientURL(), "w", "wrong"), "test", Log(slog.New(rec)))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	deadline := time.Now().Add(10 * time.Second)
	for !rec.has("authorization violation") {
		if time.Now().After(deadline) {
			t.Fatalf("no log line about the refused credentials: %q", rec.msgs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if nc.IsClosed() {
		t.Fatal("the connection gave up after refused credentials")
	}
	ok, err := Connect(urls[RoleWorker], "test", Log(slog.New(rec)))
	if err != nil {
		t.Fatal(err)
	}
	defer ok.Close()
	if err := ok.Flush(); err != nil {
		t.Fatalf("good credentials: %v", err)
	}
	for !rec.has("nats connected") { // callbacks run asynchronously
		if time.Now().After(deadline) {
			t.Fatalf("no log line about the connection: %q", rec.msgs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
