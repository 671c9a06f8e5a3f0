package autoscaler

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// PGLeader elects one scaler per region with a PostgreSQL advisory lock:
// the control plane that holds pg_try_advisory_lock on the region's key, on
// a connection of its own, is the region's scaler. The lock goes with the
// connection, so a control plane that dies (or loses PostgreSQL) hands the
// region to the next one that asks.
type PGLeader struct {
	log  *slog.Logger
	conf *pgx.ConnConfig

	mu    sync.Mutex
	conns map[string]*pgx.Conn // by region, holding its lock
}

// NewPGLeader returns a leader elector connecting with conf.
func NewPGLeader(log *slog.Logger, conf *pgx.ConnConfig) *PGLeader {
	return &PGLeader{log: log, conf: conf, conns: map[string]*pgx.Conn{}}
}

// lockSQL takes the region's lock; the two keys are hashtext of the
// namespace and of the region.
const lockSQL = `SELECT pg_try_advisory_lock(hashtext('opensandbox-autoscaler'), hashtext($1))`

// Lead reports whether this process is the region's scaler, taking the
// lock when it is free.
func (l *PGLeader) Lead(ctx context.Context, region string) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	l.mu.Lock()
	defer l.mu.Unlock()
	if c, ok := l.conns[region]; ok {
		if err := c.Ping(ctx); err == nil {
			return true
		}
		l.log.Warn("autoscaler: lost the leader connection", "region", region)
		c.Close(context.WithoutCancel(ctx))
		delete(l.conns, region)
	}
	c, err := pgx.ConnectConfig(ctx, l.conf)
	if err != nil {
		l.log.Warn("autoscaler: connect for the leader lock", "err", err)
		return false
	}
	var got bool
	if err := c.QueryRow(ctx, lockSQL, region).Scan(&got); err != nil || !got {
		c.Close(context.WithoutCancel(ctx))
		return false
	}
	l.log.Info("autoscaler: leading the region", "region", region)
	l.conns[region] = c
	return true
}

// Close gives up every region.
func (l *PGLeader) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for r, c := range l.conns {
		c.Close(context.Background())
		delete(l.conns, r)
	}
}
