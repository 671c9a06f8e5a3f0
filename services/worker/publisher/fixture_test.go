package publisher

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/opensandbox/opensandbox/services/shared/events"
	"github.com/opensandbox/opensandbox/services/shared/natsx"
	"github.com/opensandbox/opensandbox/services/shared/pgschema"
	"github.com/opensandbox/opensandbox/services/shared/pgtest"
	"github.com/opensandbox/opensandbox/services/syncer/syncer"
	"github.com/opensandbox/opensandbox/services/worker/internal/sandboxdb"
	"github.com/prometheus/client_golang/prometheus"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// pipeline is a real event pipeline: per-sandbox SQLite files, a publisher,
// an embedded JetStream server, a syncer and a PostgreSQL database.
type pipeline struct {
	t        testing.TB
	dataDir  string
	natsDir  string
	natsPort int
	nats     *server.Server
	dsn      string
	pool     *pgxpool.Pool
	pub      *Publisher
	stopPub  context.CancelFunc
	pubDone  chan struct{}
	stopSync context.CancelFunc
	syncDone chan struct{}
	syncer   *syncer.Syncer
	dbs      map[string]*sandboxdb.DB
	stream   natsx.StreamPolicy // SANDBOX_EVENTS' policy (default: consumed, 10 GiB)
	perMsg   int                // the publisher's EventsPerMessage (0: its default)
}

func quietLog() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}

func newPipeline(t testing.TB) *pipeline {
	t.Helper()
	ctx := context.Background()
	p := &pipeline{t: t, dataDir: t.TempDir(), natsDir: t.TempDir(), dbs: map[string]*sandboxdb.DB{}, stream: natsx.ConsumedStream(0)}
	p.dsn = pgtest.NewDatabase(t)
	pool, err := pgxpool.New(ctx, p.dsn)
	if err != nil {
		t.Fatal(err)
	}
	p.pool = pool
	if _, err := pgschema.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	p.natsPort = l.Addr().(*net.TCPAddr).Port
	l.Close()
	p.startNATS()
	t.Cleanup(func() {
		p.stopPublisher()
		p.stopSyncer()
		for _, db := range p.dbs {
			db.Close()
		}
		p.nats.Shutdown()
		pool.Close()
	})
	return p
}

// natsURL is the URL of the NATS server with role's credentials: the server
// knows one user per role, with the production permissions.
func (p *pipeline) natsURL(role string) string {
	return natsx.URLFor("nats://127.0.0.1:"+strconv.Itoa(p.natsPort), role, role+"-password")
}

func (p *pipeline) startNATS() {
	var users []natsx.User
	for _, role := range natsx.Roles {
		users = append(users, natsx.User{Name: role, Password: role + "-password", Role: role})
	}
	srv, err := natsx.StartEmbedded(natsx.EmbeddedOptions{Port: p.natsPort, StoreDir: p.natsDir, Users: users})
	if err != nil {
		p.t.Fatal(err)
	}
	p.nats = srv
}

// js connects as role: the publisher as a worker, the syncer as the syncer,
// the tests themselves as the control plane.
func (p *pipeline) js(role string) jetstream.JetStream {
	nc, err := natsx.Connect(p.natsURL(role), "test-"+role, natsx.As(role))
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		p.t.Fatal(err)
	}
	return js
}

func (p *pipeline) startPublisher() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A worker may not create the stream: the control plane (or the
	// syncer) does.
	if _, err := natsx.EnsureEventStream(ctx, quietLog(), p.js(natsx.RoleControlPlane), p.stream); err != nil {
		p.t.Fatal(err)
	}
	pub, err := New(quietLog(), p.js(natsx.RoleWorker), Config{DataDir: p.dataDir, Subject: natsx.EventSubject("test", "w1"), AckWait: 3 * time.Second, Stream: p.stream, EventsPerMessage: p.perMsg}, NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		p.t.Fatal(err)
	}
	p.pub = pub
	rctx, rcancel := context.WithCancel(context.Background())
	p.stopPub, p.pubDone = rcancel, make(chan struct{})
	go func() { defer close(p.pubDone); pub.Run(rctx) }()
}

func (p *pipeline) stopPublisher() {
	if p.stopPub != nil {
		p.stopPub()
		<-p.pubDone
		p.stopPub = nil
	}
}

func (p *pipeline) startSyncer() {
	cfg := syncer.DefaultConfig()
	cfg.MaxBackoff = 500 * time.Millisecond
	cfg.MaxTries = 3
	cfg.Stream = p.stream
	p.syncer = syncer.New(quietLog(), p.js(natsx.RoleSyncer), p.pool, cfg, syncer.NewMetrics(prometheus.NewRegistry()))
	ctx, cancel := context.WithCancel(context.Background())
	p.stopSync, p.syncDone = cancel, make(chan struct{})
	go func() { defer close(p.syncDone); p.syncer.Run(ctx) }()
}

func (p *pipeline) stopSyncer() {
	if p.stopSync != nil {
		p.stopSync()
		<-p.syncDone
		p.stopSync = nil
	}
}

// db opens (creating) the database of a fake sandbox directory.
func (p *pipeline) db(sandboxID string) *sandboxdb.DB {
	if db, ok := p.dbs[sandboxID]; ok {
		return db
	}
	dir := filepath.Join(p.dataDir, "sandboxes", sandboxID)
	os.MkdirAll(dir, 0o700)
	db, err := sandboxdb.Open(filepath.Join(dir, "sandbox.db"))
	if err != nil {
		p.t.Fatal(err)
	}
	p.dbs[sandboxID] = db
	return db
}

// writeCommands records n command events in a sandbox's SQLite, the way the
// worker does, and notifies the publisher.
func (p *pipeline) writeCommands(sandboxID string, n int) {
	db := p.db(sandboxID)
	for i := range n {
		ev := events.Event{
			ID: events.NewID(), Type: events.TypeCommand, SandboxID: sandboxID, WorkerID: "w1", Region: "test", Time: time.Now().UTC(),
			Command: &events.CommandData{Command: "echo", Args: []string{strconv.Itoa(i)}, ExitCode: i % 3, DurationMs: 1, StdoutLen: 2},
		}
		payload, _ := events.Marshal(ev)
		if err := db.AddEvent(context.Background(), sandboxdb.Event{ID: ev.ID, Type: ev.Type, Payload: payload, CreatedAt: ev.Time}); err != nil {
			p.t.Fatal(err)
		}
	}
	if p.pub != nil {
		p.pub.Notify(sandboxID)
	}
}

func (p *pipeline) count(query string, args ...any) int {
	var n int
	if err := p.pool.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		p.t.Fatalf("%s: %v", query, err)
	}
	return n
}

// logRows counts the log rows of all events: command events in command_logs,
// every other event in sandbox_events.
const logRows = `SELECT (SELECT count(*) FROM command_logs) + (SELECT count(*) FROM sandbox_events)`

// waitRows waits until the event logs hold want rows, then checks they stay
// exactly there and that no SQLite row is left unsynced.
func (p *pipeline) waitRows(want int, within time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := p.count(logRows)
		if got == want {
			break
		}
		if got > want {
			p.t.Fatalf("event logs have %d rows, more than the %d events produced", got, want)
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("event logs have %d rows after %s, want %d", got, within, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Marking synced happens right after the ack; give it a moment.
	unsynced := p.unsynced()
	for i := 0; unsynced > 0 && i < 100; i++ {
		time.Sleep(50 * time.Millisecond)
		unsynced = p.unsynced()
	}
	if unsynced != 0 {
		p.t.Fatalf("%d events still unsynced in SQLite after all reached PostgreSQL", unsynced)
	}
	if got := p.count(logRows); got != want {
		p.t.Fatalf("event logs changed to %d rows, want %d", got, want)
	}
}

func sandboxName(i int) string { return fmt.Sprintf("sb%04d", i) }

func pgtestShared() (*pgtest.Server, error) { return pgtest.Shared() }

// unsynced counts events not yet marked synced across the fake sandboxes.
func (p *pipeline) unsynced() int {
	total := 0
	for _, db := range p.dbs {
		n, err := db.CountUnsynced(context.Background())
		if err != nil {
			p.t.Fatal(err)
		}
		total += n
	}
	return total
}

// eventually waits until query counts want.
func (p *pipeline) eventually(within time.Duration, what, query string, want int) {
	p.t.Helper()
	deadline := time.Now().Add(within)
	for p.count(query) != want {
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: %s is %d, want %d", what, query, p.count(query), want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
