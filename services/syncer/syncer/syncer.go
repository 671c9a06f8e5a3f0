// Package syncer consumes sandbox events from JetStream and writes them to
// PostgreSQL in batches. A message holds one or more events (see
// events.MarshalBatch); it is acknowledged only after the transaction
// holding its events committed. PostgreSQL being down means waiting and
// retrying with backoff while acknowledging nothing. A message with an event
// that cannot be decoded or written is redelivered (its other events are
// written, once, meanwhile); after MaxTries deliveries each such event goes
// to the dead-letter subject, counted.
package syncer

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/opensandbox/opensandbox/services/shared/events"
	"github.com/opensandbox/opensandbox/services/shared/natsx"
)

// Config configures a syncer.
type Config struct {
	BatchSize  int           // messages per fetch and transaction (each holds up to 250 events)
	MaxWait    time.Duration // how long a fetch waits to fill a batch
	MaxTries   int           // deliveries before a bad message is dead-lettered
	AckWait    time.Duration // JetStream redelivers what is not acked by then
	MaxBackoff time.Duration // longest wait between retries while PostgreSQL is down
	Writers    int           // batches written concurrently
	// Stream is the policy SANDBOX_EVENTS is created with when missing (a
	// consumed work queue); an existing stream is never changed.
	Stream natsx.StreamPolicy
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{BatchSize: 100, MaxWait: 100 * time.Millisecond, MaxTries: 5, AckWait: 30 * time.Second, MaxBackoff: 5 * time.Second, Writers: 2,
		Stream: natsx.ConsumedStream(0)}
}

// Syncer moves events from JetStream to PostgreSQL.
type Syncer struct {
	log     *slog.Logger
	js      jetstream.JetStream
	pool    *pgxpool.Pool
	cfg     Config
	metrics *Metrics

	mu     sync.Mutex
	status Status
	// What is failing now: reaching the stream (fetch, consumer info) and
	// writing to PostgreSQL are separate, and each clears on its own success.
	failing map[string]bool
}

// Parts of the pipeline whose failures Status reports.
const (
	partStream = "stream"
	partWrite  = "write"
)

// Status is what GET /health reports.
type Status struct {
	OK             bool      `json:"ok"`
	Pending        uint64    `json:"pending"`    // messages in the stream not yet delivered to us
	AckPending     int       `json:"ackPending"` // delivered, not yet committed
	LastBatchAt    time.Time `json:"lastBatchAt,omitzero"`
	LastEventAgeMs int64     `json:"lastEventAgeMs"` // event age at insert, last batch
	Written        uint64    `json:"written"`        // events
	DeadLettered   uint64    `json:"deadLettered"`   // events
	LastError      string    `json:"lastError,omitempty"`
}

// Public is the status without error text, for unauthenticated health
// checks (errors can name internal hosts; they are in the logs).
func (s Status) Public() Status {
	s.LastError = ""
	return s
}

// New returns a syncer.
func New(log *slog.Logger, js jetstream.JetStream, pool *pgxpool.Pool, cfg Config, metrics *Metrics) *Syncer {
	if cfg.Stream == (natsx.StreamPolicy{}) {
		cfg.Stream = natsx.ConsumedStream(0)
	}
	return &Syncer{log: log, js: js, pool: pool, cfg: cfg, metrics: metrics, status: Status{OK: true}, failing: map[string]bool{}}
}

// Written returns how many events this syncer has committed.
func (s *Syncer) Written() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status.Written
}

// Status returns the current health, refreshing the consumer's backlog.
func (s *Syncer) Status(ctx context.Context) Status {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if nc := s.js.Conn(); nc != nil && !nc.IsConnected() {
		// Not connected: a lookup would wait in the reconnect buffer.
	} else if cons, err := s.js.Consumer(ctx, natsx.EventsStream, natsx.SyncConsumer); err == nil {
		if info, err := cons.Info(ctx); err == nil {
			s.mu.Lock()
			s.status.Pending = info.NumPending
			s.status.AckPending = info.NumAckPending
			s.mu.Unlock()
			s.metrics.Pending.Set(float64(info.NumPending + uint64(info.NumAckPending)))
			s.recovered(partStream) // the stream answers again
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

func (s *Syncer) consumer(ctx context.Context) (jetstream.Consumer, error) {
	if _, err := natsx.EnsureEventStream(ctx, s.log, s.js, s.cfg.Stream); err != nil {
		return nil, fmt.Errorf("event stream: %w", err)
	}
	// Dead letters go to a stream of their own, so they never fill the
	// event stream. A stream of an older version may still hold the
	// subject: then dead letters stay there (logged, not fatal).
	if _, err := natsx.EnsureDeadLetterStream(ctx, s.log, s.js); err != nil {
		s.log.Warn("dead-letter stream not created; dead letters go wherever the subject is captured", "err", err)
	}
	return s.js.CreateOrUpdateConsumer(ctx, natsx.EventsStream, jetstream.ConsumerConfig{
		Durable:       natsx.SyncConsumer,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.cfg.AckWait,
		FilterSubject: natsx.EventsSubjects,
		MaxAckPending: (s.cfg.Writers + 2) * s.cfg.BatchSize,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
}

// Run consumes until ctx ends. NATS being unreachable is waited out too.
func (s *Syncer) Run(ctx context.Context) error {
	var cons jetstream.Consumer
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, s.cfg.MaxBackoff) {
		var err error
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		cons, err = s.consumer(cctx)
		cancel()
		if err == nil {
			break
		}
		s.fail(partStream, "set up consumer", err)
		if !sleep(ctx, backoff) {
			return nil
		}
	}
	s.log.Info("syncer consuming", "stream", natsx.EventsStream, "consumer", natsx.SyncConsumer, "writers", s.cfg.Writers)
	// One goroutine fetches while the writers commit earlier batches, so
	// neither waits for the other. Writes are order-independent (see write.go).
	batches := make(chan []jetstream.Msg, s.cfg.Writers)
	var wg sync.WaitGroup
	for range s.cfg.Writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for msgs := range batches {
				s.process(ctx, msgs)
			}
		}()
	}
	s.fetchLoop(ctx, cons, batches)
	close(batches)
	wg.Wait()
	return nil
}

func (s *Syncer) fetchLoop(ctx context.Context, cons jetstream.Consumer, out chan<- []jetstream.Msg) {
	for ctx.Err() == nil {
		if nc := s.js.Conn(); nc != nil && !nc.IsConnected() {
			// A fetch would only time out (its request waits in the
			// reconnect buffer), which looks like an idle stream.
			s.fail(partStream, "fetch", errors.New("not connected to NATS"))
			sleep(ctx, 250*time.Millisecond)
			continue
		}
		batch, err := cons.Fetch(s.cfg.BatchSize, jetstream.FetchMaxWait(s.cfg.MaxWait))
		if err != nil {
			if ctx.Err() == nil {
				s.fail(partStream, "fetch", err)
				sleep(ctx, time.Second)
			}
			continue
		}
		var msgs []jetstream.Msg
		for m := range batch.Messages() {
			msgs = append(msgs, m)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil && len(msgs) == 0 {
			s.fail(partStream, "fetch", err)
			sleep(ctx, time.Second)
			continue
		}
		if ctx.Err() == nil && s.js.Conn().IsConnected() {
			// A fetch that answered, even with nothing: an idle syncer
			// is healthy.
			s.recovered(partStream)
		}
		if len(msgs) > 0 {
			select {
			case out <- msgs:
			case <-ctx.Done():
			}
		}
	}
}

// fetched is one message: its events, decoded, and those that failed.
type fetched struct {
	msg  jetstream.Msg
	rows []row
	bad  []badEvent
}

// badEvent is an event that could not be decoded or written.
type badEvent struct {
	raw []byte
	err error
}

// unpack decodes a message's events. A message without events.EventsHeader
// is one JSON event published by an earlier version.
func unpack(m jetstream.Msg) fetched {
	f := fetched{msg: m}
	encoded := [][]byte{m.Data()}
	if h := m.Headers().Get(events.EventsHeader); h != "" {
		n, err := strconv.Atoi(h)
		if err == nil {
			encoded, err = events.UnmarshalBatch(m.Data(), n)
		}
		if err != nil {
			f.bad = []badEvent{{raw: m.Data(), err: err}}
			return f
		}
	}
	f.rows = make([]row, 0, len(encoded))
	for _, raw := range encoded {
		ev, err := events.Unmarshal(raw)
		if err != nil {
			f.bad = append(f.bad, badEvent{raw: raw, err: err})
			continue
		}
		f.rows = append(f.rows, row{ev: ev, raw: raw})
	}
	return f
}

// process writes the events of one fetched batch of messages in one
// transaction, then acknowledges each message whose events are all written.
func (s *Syncer) process(ctx context.Context, msgs []jetstream.Msg) {
	batch := make([]fetched, len(msgs))
	n := 0
	for i, m := range msgs {
		batch[i] = unpack(m)
		n += len(batch[i].rows)
	}
	rows := make([]row, 0, n)
	for _, f := range batch {
		rows = append(rows, f.rows...)
	}
	if len(rows) > 0 {
		err := s.writeWithRetry(ctx, rows, msgs)
		switch {
		case err == nil:
			s.written(rows)
		case ctx.Err() != nil:
			return // not acked: redelivered to whoever runs next
		default:
			// A permanent error: find the bad events, message by message.
			for i := range batch {
				if !s.isolate(ctx, &batch[i]) {
					return
				}
			}
		}
	}
	for i := range batch {
		if len(batch[i].bad) == 0 {
			batch[i].msg.Ack()
			continue
		}
		s.reject(ctx, batch[i])
	}
}

// isolate writes a message's events after its batch failed: all at once,
// and if that fails too, one at a time, moving those that fail to f.bad.
// It reports false when ctx ended.
func (s *Syncer) isolate(ctx context.Context, f *fetched) bool {
	if len(f.rows) == 0 {
		return true
	}
	one := []jetstream.Msg{f.msg}
	if err := s.writeWithRetry(ctx, f.rows, one); err == nil {
		s.written(f.rows)
		return true
	}
	kept := f.rows[:0:0]
	for _, r := range f.rows {
		if err := s.writeWithRetry(ctx, []row{r}, one); err != nil {
			if ctx.Err() != nil {
				return false
			}
			f.bad = append(f.bad, badEvent{raw: r.raw, err: err})
			continue
		}
		kept = append(kept, r)
	}
	s.written(kept)
	f.rows = kept
	return ctx.Err() == nil
}

// writeWithRetry retries transient failures until they pass or ctx ends; it
// returns a permanent error at once. While waiting it keeps the messages from
// being redelivered.
func (s *Syncer) writeWithRetry(ctx context.Context, rows []row, msgs []jetstream.Msg) error {
	lastProgress := time.Now()
	for backoff := 50 * time.Millisecond; ; backoff = min(2*backoff, s.cfg.MaxBackoff) {
		start := time.Now()
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := writeBatch(wctx, s.pool, rows)
		cancel()
		if err == nil {
			s.metrics.BatchDuration.Observe(time.Since(start).Seconds())
			return nil
		}
		if permanent(err) || ctx.Err() != nil {
			return err
		}
		s.metrics.WriteErrors.Inc()
		s.fail(partWrite, "write batch; retrying", err)
		if time.Since(lastProgress) > s.cfg.AckWait/3 {
			for _, m := range msgs {
				m.InProgress()
			}
			lastProgress = time.Now()
		}
		if !sleep(ctx, backoff) {
			return ctx.Err()
		}
	}
}

// written records committed events.
func (s *Syncer) written(rows []row) {
	if len(rows) == 0 {
		return
	}
	now := time.Now()
	var age time.Duration
	for _, r := range rows {
		a := now.Sub(r.ev.Time)
		s.metrics.Lag.Observe(a.Seconds())
		age = max(age, a)
	}
	s.metrics.Written.Add(float64(len(rows)))
	s.recovered(partWrite)
	s.mu.Lock()
	s.status.LastBatchAt = now
	s.status.LastEventAgeMs = age.Milliseconds()
	s.status.Written += uint64(len(rows))
	s.mu.Unlock()
}

// reject handles a message with events that could not be decoded or
// written: it is redelivered (its good events are already committed, so a
// redelivery writes nothing twice) until MaxTries deliveries, then each bad
// event goes to the dead-letter subject and the message is done.
func (s *Syncer) reject(ctx context.Context, f fetched) {
	meta, err := f.msg.Metadata()
	if err == nil && int(meta.NumDelivered) < s.cfg.MaxTries {
		f.msg.NakWithDelay(time.Second)
		return
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, b := range f.bad {
		dl := nats.NewMsg(natsx.DeadLetterSubj)
		dl.Data = b.raw
		dl.Header.Set("Osb-Original-Subject", f.msg.Subject())
		dl.Header.Set("Osb-Error", b.err.Error())
		if meta != nil {
			// Sent again after a failure below, a dead letter collapses
			// into the one already stored.
			sum := sha256.Sum256(b.raw)
			dl.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%d.%x", meta.Sequence.Stream, sum[:12]))
		}
		if _, err := s.js.PublishMsg(pctx, dl); err != nil {
			f.msg.NakWithDelay(time.Second) // keep the message rather than lose an event
			s.fail(partWrite, "dead-letter", err)
			return
		}
		s.log.Warn("event dead-lettered", "subject", f.msg.Subject(), "err", b.err)
	}
	f.msg.Term()
	s.deadLettered(len(f.bad))
}

func (s *Syncer) deadLettered(n int) {
	s.metrics.DeadLettered.Add(float64(n))
	s.mu.Lock()
	s.status.DeadLettered += uint64(n)
	s.mu.Unlock()
}

func (s *Syncer) fail(part, what string, err error) {
	s.mu.Lock()
	if s.failing[part] && part == partStream {
		s.log.Debug("syncer: "+what, "err", err) // logged when it started failing
	} else {
		s.log.Warn("syncer: "+what, "err", err)
	}
	s.failing[part] = true
	s.status.OK = false
	s.status.LastError = what + ": " + err.Error()
	s.mu.Unlock()
}

// recovered clears a part's failure; the syncer is OK when no part fails.
func (s *Syncer) recovered(part string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.failing[part] {
		return
	}
	delete(s.failing, part)
	if len(s.failing) == 0 {
		s.status.OK = true
		s.status.LastError = ""
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
