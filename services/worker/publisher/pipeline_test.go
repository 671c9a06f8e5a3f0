package publisher

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/opensandbox/opensandbox/services/shared/events"
	"github.com/opensandbox/opensandbox/services/shared/natsx"
	"github.com/opensandbox/opensandbox/services/worker/internal/sandboxdb"
)

// burst writes n command events spread over sandboxes, in small groups with
// a pause between, so faults can happen while it runs. It returns when done.
func burst(p *pipeline, sandboxes, n int, pause time.Duration) {
	per := n / sandboxes
	for written := 0; written < per; written += 50 {
		for s := range sandboxes {
			p.writeCommands(sandboxName(s), min(50, per-written))
		}
		time.Sleep(pause)
	}
}

func TestPipelineDeliversEachEventOnce(t *testing.T) {
	p := newPipeline(t)
	p.startPublisher()
	p.startSyncer()
	burst(p, 4, 2000, 0)
	p.waitRows(2000, 30*time.Second)
	if n := p.count(`SELECT count(*) FROM command_logs`); n != 2000 {
		t.Fatalf("command_logs has %d rows, want 2000", n)
	}
	if n := p.count(`SELECT count(DISTINCT sandbox_id) FROM command_logs`); n != 4 {
		t.Fatalf("command_logs spans %d sandboxes, want 4", n)
	}
	if n := p.count(`SELECT count(*) FROM command_logs WHERE command = 'echo' AND cardinality(args) = 1 AND duration_ms = 1 AND stdout_len = 2`); n != 2000 {
		t.Fatalf("only %d command rows carry the event's fields", n)
	}
}

func TestPipelineNATSDownForTenSeconds(t *testing.T) {
	p := newPipeline(t)
	p.startPublisher()
	p.startSyncer()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); burst(p, 3, 3000, 100*time.Millisecond) }()
	time.Sleep(500 * time.Millisecond)
	p.nats.Shutdown()
	p.nats.WaitForShutdown()
	time.Sleep(10 * time.Second) // the outage the issue asks for; the burst goes on meanwhile
	if st := p.pub.Status(); st.Unsynced == 0 || st.OldestUnsyncedAgeMs < 1000 || st.LastError == "" {
		t.Errorf("publisher status during the outage shows no backlog: %+v", st)
	}
	p.startNATS()
	wg.Wait()
	p.waitRows(3000, 60*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for st := p.pub.Status(); st.Unsynced != 0 || st.LastError != ""; st = p.pub.Status() {
		if time.Now().After(deadline) {
			t.Fatalf("publisher status after recovery: %+v", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestPipelinePostgresDownDuringBurst(t *testing.T) {
	p := newPipeline(t)
	p.startPublisher()
	p.startSyncer()
	srv, err := pgtestShared()
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); burst(p, 3, 3000, 100*time.Millisecond) }()
	time.Sleep(500 * time.Millisecond)
	if err := srv.StopForFault(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second)
	if st := p.syncer.Status(context.Background()); st.OK {
		t.Error("syncer reports ok while PostgreSQL is down")
	}
	if err := srv.StartAfterFault(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	p.waitRows(3000, 60*time.Second)
}

func TestPipelinePublisherStoppedMidPublishAndRestarted(t *testing.T) {
	p := newPipeline(t)
	p.startSyncer()
	burst(p, 5, 10000, 0) // all in SQLite before any publishing
	p.startPublisher()
	// Stop it as soon as it has marked some rows: mid-publish.
	deadline := time.Now().Add(30 * time.Second)
	for p.unsynced() == 10000 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	p.stopPublisher()
	if left := p.unsynced(); left == 0 || left == 10000 {
		t.Fatalf("publisher was not stopped mid-publish: %d of 10000 unsynced", left)
	}
	p.startPublisher()
	p.waitRows(10000, 60*time.Second)
}

func TestPipelineSameMessageTwiceAndPoison(t *testing.T) {
	p := newPipeline(t)
	p.startSyncer()
	js := p.js(natsx.RoleControlPlane)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ev := events.Event{ID: events.NewID(), Type: events.TypeCommand, SandboxID: "dup", WorkerID: "w1", Region: "test", Time: time.Now().UTC(),
		Command: &events.CommandData{Command: "true", ExitCode: 0}}
	b, _ := json.Marshal(ev)
	// The same event under two message ids gets past JetStream's duplicate
	// window: only the syncer's idempotency can keep it to one row.
	for _, msgID := range []string{"a", "b"} {
		m := nats.NewMsg(natsx.EventSubject("test", "w1"))
		m.Data = b
		m.Header.Set(jetstream.MsgIDHeader, msgID)
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	// A poison message: never decodable. It must end in the dead-letter subject.
	if _, err := js.Publish(ctx, natsx.EventSubject("test", "w1"), []byte(`{not json`)); err != nil {
		t.Fatal(err)
	}
	// And a good event after it still arrives.
	ev2 := ev
	ev2.ID = events.NewID()
	b2, _ := json.Marshal(ev2)
	if _, err := js.Publish(ctx, natsx.EventSubject("test", "w1"), b2); err != nil {
		t.Fatal(err)
	}
	p.waitRows(2, 30*time.Second)
	if n := p.count(`SELECT count(*) FROM command_logs WHERE sandbox_id = 'dup'`); n != 2 {
		t.Fatalf("command_logs has %d rows, want 2", n)
	}
	deadline := time.Now().Add(30 * time.Second)
	for p.syncer.Status(ctx).DeadLettered != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("poison message not dead-lettered: %+v", p.syncer.Status(ctx))
		}
		time.Sleep(100 * time.Millisecond)
	}
	st, _ := js.Stream(ctx, natsx.DeadLetterStream)
	msg, err := st.GetLastMsgForSubject(ctx, natsx.DeadLetterSubj)
	if err != nil || string(msg.Data) != `{not json` {
		t.Fatalf("dead-letter subject holds %v, %v", msg, err)
	}
}

// A consumed stream that is full refuses events instead of dropping the
// oldest ones nobody has written yet: the refused events wait unsynced in
// SQLite, and once the syncer drains the stream each arrives exactly once.
func TestPipelineFullStreamKeepsEventsInSQLite(t *testing.T) {
	p := newPipeline(t)
	p.stream = natsx.ConsumedStream(64 << 10) // a couple of hundred command events
	p.perMsg = 20
	p.startPublisher()
	burst(p, 2, 1000, 0)
	js := p.js(natsx.RoleControlPlane)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, natsx.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for p.pub.Status().LastError == "" || p.unsynced() == 1000 {
		if time.Now().After(deadline) {
			t.Fatalf("the full stream refused nothing: %+v, %d unsynced", p.pub.Status(), p.unsynced())
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.stopPublisher() // hold still while counting
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	inStream, unsynced := streamEvents(t, st, info.State.Msgs), p.unsynced()
	if info.State.FirstSeq != 1 || info.State.Msgs == 0 || inStream+unsynced != 1000 {
		t.Fatalf("stream first seq %d with %d messages holding %d events, %d unsynced in SQLite: want nothing dropped (stream + SQLite = 1000)",
			info.State.FirstSeq, info.State.Msgs, inStream, unsynced)
	}
	p.startPublisher()
	if info.Config.Retention != jetstream.WorkQueuePolicy || info.Config.Discard != jetstream.DiscardNew {
		t.Fatalf("stream policy %v/%v", info.Config.Retention, info.Config.Discard)
	}
	p.startSyncer()
	p.waitRows(1000, 60*time.Second)
	if n := p.count(`SELECT count(DISTINCT event_id) FROM command_logs`); n != 1000 {
		t.Fatalf("%d distinct events in PostgreSQL, want 1000", n)
	}
	// Acknowledged events leave the work queue.
	deadline = time.Now().Add(10 * time.Second)
	for {
		info, err := st.Info(ctx)
		if err == nil && info.State.Msgs == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream still holds %d messages after the syncer wrote them all", info.State.Msgs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A sandbox directory removed behind the publisher's back (not through
// retireIfDone) has its database handle closed at the next round.
func TestPublisherForgetsRemovedSandboxDirectories(t *testing.T) {
	p := newPipeline(t)
	p.startSyncer()
	p.startPublisher()
	p.writeCommands("gone", 3)
	p.writeCommands("kept", 3)
	p.waitRows(6, 30*time.Second)
	if n := p.pub.openDBs(); n != 2 {
		t.Fatalf("%d databases open, want 2", n)
	}
	p.dbs["gone"].Close()
	delete(p.dbs, "gone")
	if err := os.RemoveAll(filepath.Join(p.dataDir, "sandboxes", "gone")); err != nil {
		t.Fatal(err)
	}
	p.pub.Notify("gone")
	deadline := time.Now().Add(10 * time.Second) // within one rescan (2 s)
	for p.pub.openDBs() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d databases open after the directory was removed, want 1", p.pub.openDBs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The syncer as a real process, killed with SIGKILL in the middle of a burst.
func TestPipelineSyncerKilledMidBatch(t *testing.T) {
	p := newPipeline(t)
	p.perMsg = 10
	bin := buildSyncer(t)
	start := func() *exec.Cmd {
		cmd := exec.Command(bin)
		// 50 events per transaction: hundreds of them, so the kill lands mid-way.
		cmd.Env = append(os.Environ(), "DATABASE_URL="+p.dsn, "NATS_URL="+p.natsURL(natsx.RoleSyncer), "OPENSANDBOX_SYNCER_PORT=0", "OPENSANDBOX_SYNC_BATCH=5", "OPENSANDBOX_LOG_LEVEL=error")
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	burst(p, 5, 20000, 0)
	p.startPublisher()
	syncer := start()
	// Kill it once rows are flowing, i.e. in the middle of its batches.
	deadline := time.Now().Add(30 * time.Second)
	for p.count(logRows) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("syncer process wrote nothing")
		}
		time.Sleep(5 * time.Millisecond)
	}
	syncer.Process.Signal(syscall.SIGKILL)
	syncer.Wait()
	if n := p.count(logRows); n >= 20000 {
		t.Fatalf("syncer finished before the kill (%d rows): nothing was killed mid-batch", n)
	}
	syncer = start()
	defer func() { syncer.Process.Signal(syscall.SIGKILL); syncer.Wait() }()
	p.waitRows(20000, 60*time.Second)
}

var (
	syncerOnce sync.Once
	syncerBin  string
	syncerErr  error
)

func buildSyncer(t testing.TB) string {
	syncerOnce.Do(func() {
		dir, err := os.MkdirTemp("", "osb-syncer-")
		if err != nil {
			syncerErr = err
			return
		}
		syncerBin = filepath.Join(dir, "opensandbox-syncer")
		out, err := exec.Command("go", "build", "-o", syncerBin, "github.com/opensandbox/opensandbox/services/syncer").CombinedOutput()
		if err != nil {
			syncerErr = err
			syncerBin = string(out)
		}
	})
	if syncerErr != nil {
		t.Fatalf("build syncer: %v\n%s", syncerErr, syncerBin)
	}
	return syncerBin
}

// streamEvents counts the events the first n messages of the stream hold.
func streamEvents(t *testing.T, st jetstream.Stream, n uint64) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	total := 0
	for seq := uint64(1); seq <= n; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("stream message %d: %v", seq, err)
		}
		k, err := strconv.Atoi(m.Header.Get(events.EventsHeader))
		if err != nil {
			t.Fatalf("stream message %d has no event count: %v", seq, err)
		}
		total += k
	}
	return total
}

// One message with a bad event between two good ones: the good ones are
// written at once and once; the bad one is dead-lettered (alone) after
// MaxTries deliveries. A message whose body does not match its event count
// is dead-lettered whole.
func TestPipelineBadEventInABatch(t *testing.T) {
	p := newPipeline(t)
	p.startSyncer()
	js := p.js(natsx.RoleControlPlane)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	good := func() []byte {
		b, _ := events.Marshal(events.Event{ID: events.NewID(), Type: events.TypeCommand, SandboxID: "mixed", WorkerID: "w1", Time: time.Now().UTC(),
			Command: &events.CommandData{Command: "true"}})
		return b
	}
	poison := []byte("\xffnot an event")
	publish := func(id string, body []byte, count string) {
		m := nats.NewMsg(natsx.EventSubject("test", "w1"))
		m.Data = body
		m.Header.Set(jetstream.MsgIDHeader, id)
		m.Header.Set(events.EventsHeader, count)
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	publish("mixed", events.MarshalBatch([][]byte{good(), poison, good()}), "3")
	mismatched := events.MarshalBatch([][]byte{good(), good()})
	publish("mismatched", mismatched, "3")

	p.waitRows(2, 20*time.Second)
	deadline := time.Now().Add(30 * time.Second)
	for p.syncer.Status(ctx).DeadLettered != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("bad events not dead-lettered: %+v", p.syncer.Status(ctx))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := p.count(`SELECT count(*) FROM command_logs WHERE sandbox_id = 'mixed'`); n != 2 {
		t.Fatalf("command_logs has %d rows of the mixed batch, want its 2 good events once each", n)
	}
	st, err := js.Stream(ctx, natsx.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil || info.State.Msgs != 2 {
		t.Fatalf("dead-letter stream: %+v, %v; want 2 messages", info, err)
	}
	var bodies []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, string(m.Data))
	}
	if !slices.Contains(bodies, string(poison)) || !slices.Contains(bodies, string(mismatched)) {
		t.Fatalf("dead letters %q: want the poison event alone and the mismatched message whole", bodies)
	}
	// Both messages are done: the work queue is empty.
	ev, _ := js.Stream(ctx, natsx.EventsStream)
	for {
		info, err := ev.Info(ctx)
		if err == nil && info.State.Msgs == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("event stream still holds %d messages", info.State.Msgs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A row recorded before events were bounded, too big for one NATS message
// (2 MiB of arguments, as JSON like earlier versions wrote): it is cut
// to the bounds on its way out and lands once, instead of holding up its
// sandbox's events for good.
func TestPipelineOversizedLegacyEventIsBounded(t *testing.T) {
	p := newPipeline(t)
	args := make([]string, 40)
	for i := range args {
		args[i] = strings.Repeat("x", 50<<10)
	}
	ev := events.Event{ID: events.NewID(), Type: events.TypeCommand, SandboxID: "old", WorkerID: "w1", Region: "test", Time: time.Now().UTC(),
		Command: &events.CommandData{Command: "echo", Args: args}}
	payload, _ := json.Marshal(ev)
	if len(payload) < 1<<20 {
		t.Fatalf("the legacy row is only %d bytes", len(payload))
	}
	if err := p.db("old").AddEvent(context.Background(), sandboxdb.Event{ID: ev.ID, Type: ev.Type, Payload: payload, CreatedAt: ev.Time}); err != nil {
		t.Fatal(err)
	}
	p.writeCommands("old", 3) // and events after it
	p.startPublisher()
	p.startSyncer()
	p.waitRows(4, 30*time.Second)
	var n, longest int
	if err := p.pool.QueryRow(context.Background(), `SELECT cardinality(args), (SELECT max(length(a)) FROM unnest(args) a)
		FROM command_logs WHERE event_id = $1`, ev.ID).Scan(&n, &longest); err != nil {
		t.Fatal(err)
	}
	if n != 40 || longest > events.MaxTextBytes {
		t.Fatalf("the oversized event landed with %d args, the longest %d bytes", n, longest)
	}
}

// With one event per message (OPENSANDBOX_EVENTS_PER_MESSAGE=1) every
// message holds one event and carries that event's id as its Nats-Msg-Id.
func TestPipelineOneEventPerMessage(t *testing.T) {
	p := newPipeline(t)
	p.perMsg = 1
	p.writeCommands("single", 20) // all waiting together: still 20 messages
	p.startPublisher()
	js := p.js(natsx.RoleControlPlane)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, natsx.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for p.unsynced() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d events still unsynced", p.unsynced())
		}
		time.Sleep(20 * time.Millisecond)
	}
	info, err := st.Info(ctx)
	if err != nil || info.State.Msgs != 20 {
		t.Fatalf("stream holds %v messages (%v), want 20", info.State.Msgs, err)
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		encoded, err := events.UnmarshalBatch(m.Data, 1)
		if err != nil || m.Header.Get(events.EventsHeader) != "1" {
			t.Fatalf("message %d: %v, header %q", seq, err, m.Header.Get(events.EventsHeader))
		}
		ev, err := events.Unmarshal(encoded[0])
		if err != nil || m.Header.Get(jetstream.MsgIDHeader) != ev.ID {
			t.Fatalf("message %d: id %q, event %q (%v)", seq, m.Header.Get(jetstream.MsgIDHeader), ev.ID, err)
		}
	}
}
