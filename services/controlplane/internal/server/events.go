package server

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"

	"github.com/gofiber/fiber/v2"
	"github.com/jackc/pgx/v5/pgxpool"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/opensandbox/opensandbox/services/shared/natsx"
	"github.com/opensandbox/opensandbox/services/syncer/syncer"
	"github.com/opensandbox/opensandbox/services/worker/publisher"
	"github.com/prometheus/client_golang/prometheus"
)

// events is a mode's part of the event pipeline: in combined mode the
// publisher (per-sandbox SQLite -> JetStream, on an embedded NATS server
// unless NATS_URL names one), and wherever PostgreSQL is configured the
// syncer (JetStream -> PostgreSQL) running in-process.
type events struct {
	log      *slog.Logger
	stream   natsx.StreamPolicy
	embedded *natsserver.Server
	nc       *nats.Conn
	js       jetstream.JetStream
	pub      *publisher.Publisher
	syn      *syncer.Syncer
	cancels  []context.CancelFunc
	wg       sync.WaitGroup
}

// startEvents connects to NATS — starting an embedded server under
// dataDir/nats when natsURL is empty — and returns the pipeline's handle;
// stream is the event stream's policy (natsx.ConsumedStream where a syncer
// writes to PostgreSQL).
func startEvents(log *slog.Logger, natsURL, dataDir string, stream natsx.StreamPolicy) (*events, error) {
	e := &events{log: log, stream: stream}
	if natsURL == "" {
		// This process is the embedded server's only client: it gets a
		// user with a random password, and nothing else may connect.
		pw := rand.Text()
		srv, err := natsx.StartEmbedded(natsx.EmbeddedOptions{Port: -1, StoreDir: filepath.Join(dataDir, "nats"),
			Users: []natsx.User{{Name: natsx.RoleControlPlane, Password: pw, Role: natsx.RoleControlPlane}}})
		if err != nil {
			return nil, err
		}
		e.embedded = srv
		natsURL = natsx.URLFor(srv.ClientURL(), natsx.RoleControlPlane, pw)
		log.Info("embedded NATS JetStream", "url", srv.ClientURL())
	}
	nc, err := natsx.Connect(natsURL, "opensandbox-server", natsx.As(natsx.RoleControlPlane), natsx.Log(log))
	if err != nil {
		e.Close()
		return nil, fmt.Errorf("nats: %w", err)
	}
	e.nc = nc
	if e.js, err = jetstream.New(nc); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// publish starts the publisher over the sandboxes of dataDir; the manager
// must be configured with RetainEvents and OnEvent = Notify.
func (e *events) publish(ctx context.Context, reg prometheus.Registerer, dataDir, region, workerID string, perMessage int) error {
	pub, err := publisher.New(e.log, e.js, publisher.Config{DataDir: dataDir, Subject: natsx.EventSubject(region, workerID), Stream: e.stream,
		EventsPerMessage: perMessage}, publisher.NewMetrics(reg))
	if err != nil {
		return err
	}
	e.pub = pub
	e.run(ctx, pub.Run)
	return nil
}

// sync starts the syncer writing to pool.
func (e *events) sync(ctx context.Context, reg prometheus.Registerer, pool *pgxpool.Pool) {
	cfg := syncer.DefaultConfig()
	cfg.Stream = e.stream
	e.syn = syncer.New(e.log, e.js, pool, cfg, syncer.NewMetrics(reg))
	e.run(ctx, e.syn.Run)
}

func (e *events) run(ctx context.Context, f func(context.Context) error) {
	ctx, cancel := context.WithCancel(ctx)
	e.cancels = append(e.cancels, cancel)
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		if err := f(ctx); err != nil {
			e.log.Error("event pipeline stopped", "err", err)
		}
	}()
}

// health is the pipeline's part of GET /health: figures for anyone, error
// text only for authenticated callers (it can name internal hosts).
func (e *events) health(c *fiber.Ctx, authenticated bool) fiber.Map {
	h := fiber.Map{}
	if e.pub != nil {
		st := e.pub.Status()
		if !authenticated {
			st = st.Public()
		}
		h["publisher"] = st
	}
	if e.syn != nil {
		st := e.syn.Status(c.UserContext())
		if !authenticated {
			st = st.Public()
		}
		h["syncer"] = st
	}
	return h
}

// Close stops the publisher and syncer, then NATS.
func (e *events) Close() {
	for _, cancel := range e.cancels {
		cancel()
	}
	e.wg.Wait()
	if e.nc != nil {
		e.nc.Close()
	}
	if e.embedded != nil {
		e.embedded.Shutdown()
		e.embedded.WaitForShutdown()
	}
}
