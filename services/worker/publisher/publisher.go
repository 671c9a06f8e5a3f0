// Package publisher moves sandbox events from each sandbox's SQLite database
// to the NATS JetStream stream SANDBOX_EVENTS. A row is marked synced only
// after JetStream acknowledged it; what is not acknowledged stays in SQLite
// and is sent again.
//
// The events of a sandbox that wait together travel in one message (up to
// Config.EventsPerMessage; a lone event travels alone): JetStream's cost is
// per message, and on a small machine one message per event cannot carry
// more than a few tens of thousands of events a second (see the README's
// benchmark). The message id (Nats-Msg-Id) is the event's id when it
// travels alone and events.BatchID otherwise, so a re-send after a crash
// collapses into one message; the syncer is idempotent on each event's id
// as well.
//
// Where a syncer consumes the stream (natsx.ConsumedStream: server mode,
// combined mode with PostgreSQL) nothing is lost: the stream is a work
// queue that keeps every event until the syncer acknowledged it and, when
// full, refuses new ones, which then wait here in SQLite (a destroyed
// sandbox's directory is kept until its events are out). Where nothing
// consumes it (natsx.UnconsumedStream: combined mode without PostgreSQL)
// the stream is bounded and drops its oldest events first.
package publisher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/opensandbox/opensandbox/services/shared/events"
	"github.com/opensandbox/opensandbox/services/shared/natsx"
	"github.com/opensandbox/opensandbox/services/worker/internal/sandboxdb"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultEventsPerMessage is how many events of a sandbox share a message
// at most, unless configured (OPENSANDBOX_EVENTS_PER_MESSAGE).
const DefaultEventsPerMessage = 250

// Config configures a publisher.
type Config struct {
	DataDir   string             // the manager's data dir: sandboxes/<id>/sandbox.db
	Subject   string             // natsx.EventSubject(region, worker)
	Stream    natsx.StreamPolicy // created with this policy if missing (default: consumed)
	BatchSize int                // events read from SQLite per publish round per sandbox
	// EventsPerMessage bounds the events in one JetStream message (and
	// MaxMessageBytes its size, below NATS' max_payload).
	EventsPerMessage int
	MaxMessageBytes  int
	Rescan           time.Duration // full scan interval: a safety net, not the trigger
	AckWait          time.Duration // how long to wait for JetStream acks
	Parallel         int           // sandboxes published at once
	// FlushOnStop keeps publishing at shutdown for at most this long, so
	// that a worker being removed (the autoscaler) sends its last events;
	// 0 stops at once (they wait in SQLite for the next run).
	FlushOnStop time.Duration
}

func (c *Config) defaults() {
	if c.Stream == (natsx.StreamPolicy{}) {
		c.Stream = natsx.ConsumedStream(0)
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 1000
	}
	if c.EventsPerMessage <= 0 {
		c.EventsPerMessage = DefaultEventsPerMessage
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = 256 << 10
	}
	if c.Rescan <= 0 {
		c.Rescan = 2 * time.Second
	}
	if c.AckWait <= 0 {
		c.AckWait = 10 * time.Second
	}
	if c.Parallel <= 0 {
		c.Parallel = 4
	}
}

// Metrics are the publisher's Prometheus metrics.
type Metrics struct {
	Published prometheus.Counter
	Messages  prometheus.Counter
	Errors    prometheus.Counter
	Unsynced  prometheus.Gauge
	Lag       prometheus.Histogram
}

// NewMetrics registers the publisher's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "opensandbox_events_published_total", Help: "Sandbox events acknowledged by JetStream.",
		}),
		Messages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "opensandbox_event_messages_published_total", Help: "JetStream messages acknowledged (each holds one or more events).",
		}),
		Errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "opensandbox_events_publish_errors_total", Help: "Publish rounds that failed and will be retried.",
		}),
		Unsynced: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "opensandbox_events_unsynced", Help: "Events recorded in SQLite and not yet acknowledged by JetStream (as of the last scan).",
		}),
		Lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "opensandbox_event_publish_lag_seconds", Help: "Time from an event being recorded to its JetStream ack.",
			Buckets: []float64{.001, .005, .01, .05, .1, .25, .5, 1, 2, 5, 10, 30, 60},
		}),
	}
	reg.MustRegister(m.Published, m.Messages, m.Errors, m.Unsynced, m.Lag)
	return m
}

// Publisher publishes sandbox events.
type Publisher struct {
	log     *slog.Logger
	js      jetstream.JetStream
	cfg     Config
	metrics *Metrics

	mu     sync.Mutex
	dirty  map[string]bool // sandboxes with events to publish
	status Status
	wake   chan struct{}

	dbMu sync.Mutex
	dbs  map[string]*sandboxdb.DB // open databases, by sandbox id
}

// New returns a publisher; call Run to start it and Notify on every new event.
func New(log *slog.Logger, js jetstream.JetStream, cfg Config, metrics *Metrics) (*Publisher, error) {
	if cfg.DataDir == "" || cfg.Subject == "" {
		return nil, errors.New("publisher: DataDir and Subject are required")
	}
	cfg.defaults()
	return &Publisher{log: log, js: js, cfg: cfg, metrics: metrics, dirty: map[string]bool{}, wake: make(chan struct{}, 1), dbs: map[string]*sandboxdb.DB{}}, nil
}

// Notify tells the publisher a sandbox recorded an event. It never blocks.
func (p *Publisher) Notify(sandboxID string) {
	p.mu.Lock()
	p.dirty[sandboxID] = true
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Run publishes until ctx ends. It starts with a full scan, so events left
// unsynced by a previous run (a crash, NATS down) are sent first.
func (p *Publisher) Run(ctx context.Context) error {
	defer p.closeAll()
	// NATS may be down when the worker starts: sandboxes keep working and
	// their events wait in SQLite until the stream is there.
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := natsx.EnsureEventStream(sctx, p.log, p.js, p.cfg.Stream)
		cancel()
		if err == nil {
			break
		}
		p.setError(fmt.Errorf("event stream: %w", err))
		p.log.Warn("event stream not ready; events wait in SQLite", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
	}
	// At shutdown, send what the last moments recorded: a worker the
	// autoscaler removes does not come back for its backlog.
	defer func() {
		if p.cfg.FlushOnStop <= 0 {
			return
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.FlushOnStop)
		defer cancel()
		if err := p.drain(fctx); err != nil {
			p.log.Warn("events left unpublished at shutdown", "err", err)
		}
	}()
	p.scan()
	tick := time.NewTicker(p.cfg.Rescan)
	defer tick.Stop()
	backoff := 100 * time.Millisecond
	for {
		before := p.Status().Published
		err := p.drain(ctx)
		p.setError(err)
		if err != nil && ctx.Err() == nil {
			if p.Status().Published > before {
				// Part of the backlog went out (a full stream taking what
				// the syncer frees): keep going at once.
				backoff = 100 * time.Millisecond
			}
			p.metrics.Errors.Inc()
			p.log.Warn("publish sandbox events; will retry", "err", err, "retry_in", backoff)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			case <-tick.C:
				p.scan() // keep the backlog figures current while failing
			}
			if backoff < 5*time.Second {
				backoff *= 2
			}
			continue
		}
		backoff = 100 * time.Millisecond
		select {
		case <-ctx.Done():
			return nil
		case <-p.wake:
		case <-tick.C:
			p.scan()
		}
	}
}

// scan marks every sandbox directory dirty, closes the databases of
// directories that are gone (removed by the manager without retention, or
// by hand) and refreshes the backlog gauge.
func (p *Publisher) scan() {
	dirs, err := os.ReadDir(filepath.Join(p.cfg.DataDir, "sandboxes"))
	if err != nil && !os.IsNotExist(err) {
		return
	}
	total := 0
	var oldest time.Time
	present := map[string]bool{}
	p.mu.Lock()
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		present[d.Name()] = true
		p.dirty[d.Name()] = true
	}
	p.mu.Unlock()
	p.dbMu.Lock()
	var gone []string
	for id := range p.dbs {
		if !present[id] {
			gone = append(gone, id)
		}
	}
	p.dbMu.Unlock()
	for _, id := range gone {
		p.forget(id)
	}
	for _, d := range dirs {
		if db, err := p.open(d.Name()); err == nil {
			if n, at, err := db.Backlog(context.Background()); err == nil {
				total += n
				if !at.IsZero() && (oldest.IsZero() || at.Before(oldest)) {
					oldest = at
				}
			}
		}
	}
	p.metrics.Unsynced.Set(float64(total))
	p.mu.Lock()
	p.status.Unsynced = total
	p.status.OldestUnsyncedAgeMs = 0
	if !oldest.IsZero() {
		p.status.OldestUnsyncedAgeMs = time.Since(oldest).Milliseconds()
	}
	p.mu.Unlock()
}

// Status is the publisher's side of the pipeline health.
type Status struct {
	Unsynced            int       `json:"unsynced"`            // events in SQLite not yet acknowledged (last scan)
	OldestUnsyncedAgeMs int64     `json:"oldestUnsyncedAgeMs"` // age of the oldest of them at the last scan
	Published           uint64    `json:"published"`
	LastPublishAt       time.Time `json:"lastPublishAt,omitzero"`
	LastError           string    `json:"lastError,omitempty"`
}

// Public is the status without error text, for unauthenticated health
// checks (errors can name internal hosts; they are in the logs).
func (s Status) Public() Status {
	s.LastError = ""
	return s
}

// Status returns the backlog as of the last scan and the last outcome.
func (p *Publisher) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

func (p *Publisher) published(n int) {
	p.metrics.Published.Add(float64(n))
	p.mu.Lock()
	p.status.Published += uint64(n)
	p.status.LastPublishAt = time.Now()
	p.mu.Unlock()
}

func (p *Publisher) setError(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil {
		p.status.LastError = ""
		return
	}
	p.status.LastError = err.Error()
}

// drain publishes every dirty sandbox's events; a sandbox whose round fails
// stays dirty for the next try.
func (p *Publisher) drain(ctx context.Context) error {
	p.mu.Lock()
	ids := make([]string, 0, len(p.dirty))
	for id := range p.dirty {
		ids = append(ids, id)
	}
	p.dirty = map[string]bool{}
	p.mu.Unlock()

	// Several sandboxes at once: each round waits for JetStream acks, and
	// overlapping the rounds keeps the stream busy.
	var (
		wg       sync.WaitGroup
		errMu    sync.Mutex
		firstErr error
		sem      = make(chan struct{}, p.cfg.Parallel)
	)
	for _, id := range ids {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := p.publishSandbox(ctx, id); err != nil {
				p.mu.Lock()
				p.dirty[id] = true
				p.mu.Unlock()
				errMu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("sandbox %s: %w", id, err)
				}
				errMu.Unlock()
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// open returns a sandbox's database, opening it on first use. A cached
// handle whose file is gone is closed: an unlinked SQLite file would still
// answer, and its handle would never be released.
func (p *Publisher) open(id string) (*sandboxdb.DB, error) {
	p.dbMu.Lock()
	defer p.dbMu.Unlock()
	path := filepath.Join(p.cfg.DataDir, "sandboxes", id, "sandbox.db")
	_, statErr := os.Stat(path)
	if db, ok := p.dbs[id]; ok {
		if statErr == nil {
			return db, nil
		}
		db.Close()
		delete(p.dbs, id)
	}
	if statErr != nil {
		return nil, statErr
	}
	db, err := sandboxdb.Open(path)
	if err != nil {
		return nil, err
	}
	p.dbs[id] = db
	return db, nil
}

// publishSandbox sends one sandbox's unsynced events in batches.
func (p *Publisher) publishSandbox(ctx context.Context, id string) error {
	db, err := p.open(id)
	if err != nil {
		return nil // gone or not created yet: nothing to send
	}
	for {
		evs, err := db.Unsynced(ctx, p.cfg.BatchSize)
		if err != nil {
			if _, serr := os.Stat(filepath.Join(p.cfg.DataDir, "sandboxes", id)); os.IsNotExist(serr) {
				p.forget(id) // removed without retention (no events to keep)
				return nil
			}
			return err
		}
		if len(evs) == 0 {
			break
		}
		acked, err := p.publishBatch(ctx, evs)
		if len(acked) > 0 {
			if merr := db.MarkSynced(context.WithoutCancel(ctx), acked); merr != nil {
				return merr
			}
			p.published(len(acked))
		}
		if err != nil {
			return err
		}
		if len(evs) < p.cfg.BatchSize {
			break
		}
	}
	return p.retireIfDone(ctx, id, db)
}

// publishBatch publishes evs in messages of up to EventsPerMessage events,
// asynchronously, and returns the seqs of the events JetStream acked.
func (p *Publisher) publishBatch(ctx context.Context, evs []sandboxdb.Event) ([]int64, error) {
	for i, ev := range evs {
		if len(ev.Payload) > p.cfg.MaxMessageBytes {
			evs[i].Payload = bounded(ev.Payload)
		}
	}
	chunks := p.chunk(evs)
	futures := make([]jetstream.PubAckFuture, 0, len(chunks))
	for _, c := range chunks {
		payloads := make([][]byte, len(c))
		for i, ev := range c {
			payloads[i] = ev.Payload
		}
		msg := nats.NewMsg(p.cfg.Subject)
		msg.Data = events.MarshalBatch(payloads)
		msg.Header.Set(jetstream.MsgIDHeader, events.BatchID(c[0].ID, len(c)))
		msg.Header.Set(events.EventsHeader, strconv.Itoa(len(c)))
		f, err := p.js.PublishMsgAsync(msg)
		if err != nil {
			break
		}
		futures = append(futures, f)
	}
	timeout := time.NewTimer(p.cfg.AckWait)
	defer timeout.Stop()
	acked := make([]int64, 0, len(evs))
	var firstErr error
	for i, f := range futures {
		select {
		case <-f.Ok():
			now := time.Now()
			for _, ev := range chunks[i] {
				acked = append(acked, ev.Seq)
				p.metrics.Lag.Observe(now.Sub(ev.CreatedAt).Seconds())
			}
			p.metrics.Messages.Inc()
		case err := <-f.Err():
			if firstErr == nil {
				firstErr = err
			}
		case <-timeout.C:
			return acked, errors.New("timed out waiting for JetStream acks")
		case <-ctx.Done():
			return acked, ctx.Err()
		}
	}
	if firstErr == nil && len(futures) < len(chunks) {
		firstErr = errors.New("publish refused by the NATS connection")
	}
	return acked, firstErr
}

// bounded re-encodes an oversized event with its free-text fields cut
// (events.Event.Bound): rows recorded before events were bounded could
// otherwise exceed NATS' max_payload and hold up their sandbox for good.
// The event keeps its id; what cannot be decoded is returned as it is.
func bounded(payload []byte) []byte {
	ev, err := events.Unmarshal(payload)
	if err != nil {
		return payload
	}
	ev.Bound()
	b, err := events.Marshal(ev)
	if err != nil {
		return payload
	}
	return b
}

// chunk splits evs, in order, into the events of each message. The split
// depends only on the events, so a re-send of the same events after a crash
// yields the same messages and message ids.
func (p *Publisher) chunk(evs []sandboxdb.Event) [][]sandboxdb.Event {
	var chunks [][]sandboxdb.Event
	start, size := 0, 0
	for i, ev := range evs {
		if i > start && (i-start == p.cfg.EventsPerMessage || size+len(ev.Payload) > p.cfg.MaxMessageBytes) {
			chunks = append(chunks, evs[start:i])
			start, size = i, 0
		}
		size += len(ev.Payload) + 8 // with the batch's per-event framing
	}
	if start < len(evs) {
		chunks = append(chunks, evs[start:])
	}
	return chunks
}

// retireIfDone removes a destroyed sandbox's directory once nothing in it
// remains to be published.
func (p *Publisher) retireIfDone(ctx context.Context, id string, db *sandboxdb.DB) error {
	dir := filepath.Join(p.cfg.DataDir, "sandboxes", id)
	if _, err := os.Stat(filepath.Join(dir, sandboxdb.RetiredMarker)); err != nil {
		return nil
	}
	if n, err := db.CountUnsynced(ctx); err != nil || n > 0 {
		return err
	}
	p.forget(id)
	return os.RemoveAll(dir)
}

// forget closes a sandbox's database.
func (p *Publisher) forget(id string) {
	p.dbMu.Lock()
	defer p.dbMu.Unlock()
	if db, ok := p.dbs[id]; ok {
		db.Close()
		delete(p.dbs, id)
	}
}

// openDBs is how many sandbox databases are open (tests).
func (p *Publisher) openDBs() int {
	p.dbMu.Lock()
	defer p.dbMu.Unlock()
	return len(p.dbs)
}

func (p *Publisher) closeAll() {
	p.dbMu.Lock()
	defer p.dbMu.Unlock()
	for id, db := range p.dbs {
		db.Close()
		delete(p.dbs, id)
	}
}
