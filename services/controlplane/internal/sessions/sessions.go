// Package sessions tracks sandboxes in PostgreSQL for the control plane: the
// org's limits checked and a quota slot taken before a create, a
// sandbox_sessions row for every sandbox, stopped on kill and timeout, and
// the GET /sessions route.
package sessions

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/keyauth"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/store"
	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/shared/errs"
)

// Store is what the tracker needs from the store.
type Store interface {
	Org(ctx context.Context, id string) (store.Org, error)
	Reserve(ctx context.Context, orgID string, maxConcurrent int) (store.Reservation, error)
	Commit(ctx context.Context, r store.Reservation, sess store.Session) error
	Abort(ctx context.Context, r store.Reservation) error
	EndSession(ctx context.Context, sandboxID, status, errMsg string) (bool, error)
	SetSessionEnd(ctx context.Context, sandboxID string, end time.Time) error
	ListSessions(ctx context.Context, orgID, status string, limit int) ([]store.Session, error)
}

var _ Store = (*store.Store)(nil)

// dbTimeout bounds each bookkeeping write.
const dbTimeout = 5 * time.Second

// Tracker keeps sandbox_sessions in step with the sandboxes.
type Tracker struct {
	log            *slog.Logger
	st             Store
	defaultTimeout time.Duration
}

// NewTracker returns a tracker; defaultTimeout is the sandbox lifetime when a
// create names none.
func NewTracker(log *slog.Logger, st Store, defaultTimeout time.Duration) *Tracker {
	return &Tracker{log: log, st: st, defaultTimeout: defaultTimeout}
}

// CheckTimeout refuses a lifetime over the org's maximum (400).
func CheckTimeout(org store.Org, seconds int) error {
	if org.ID != "" && seconds > org.MaxSandboxTimeoutSec {
		return errs.Invalid("timeout %ds is over your org's maximum of %ds", seconds, org.MaxSandboxTimeoutSec)
	}
	return nil
}

// Begin checks a create against the org's limits and takes a concurrent
// slot (429 quota_exceeded at the limit). A create without a timeout gets
// the default, capped at the org's maximum. org is zero for the static key.
func (t *Tracker) Begin(ctx context.Context, org store.Org, cfg *api.SandboxConfig) (store.Reservation, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = int(t.defaultTimeout.Seconds())
		if org.ID != "" && cfg.Timeout > org.MaxSandboxTimeoutSec {
			cfg.Timeout = org.MaxSandboxTimeoutSec
		}
	}
	if err := CheckTimeout(org, cfg.Timeout); err != nil {
		return store.Reservation{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	r, err := t.st.Reserve(ctx, org.ID, 0)
	if err != nil && !errors.Is(err, store.QuotaExceeded) {
		return r, errs.Unavailable("database_unavailable", "cannot record the sandbox now").WithCause(err)
	}
	return r, err
}

// Created records the sandbox a reservation was taken for.
func (t *Tracker) Created(ctx context.Context, r store.Reservation, sb api.Sandbox, cfg api.SandboxConfig) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbTimeout)
	defer cancel()
	end := sb.EndAt
	err := t.st.Commit(ctx, r, store.Session{
		SandboxID: sb.SandboxID, OrgID: r.OrgID, Template: sb.TemplateID, Region: sb.Region, WorkerID: sb.WorkerID,
		Config: cfg, Metadata: sb.Metadata, StartedAt: sb.StartedAt, EndAt: &end,
	})
	if err != nil {
		return errs.Internal("record sandbox session", err)
	}
	return nil
}

// Abort releases the reservation of a create that failed.
func (t *Tracker) Abort(ctx context.Context, r store.Reservation) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbTimeout)
	defer cancel()
	if err := t.st.Abort(ctx, r); err != nil {
		t.log.Error("release quota reservation", "reservation", r.ID, "err", err)
	}
}

// Destroyed marks a sandbox's session stopped (killed, timeout) or error.
// It has the shape of sandbox.Config.OnDestroy.
func (t *Tracker) Destroyed(ctx context.Context, sandboxID, reason string) {
	status, msg := api.StatusStopped, ""
	if reason == "error" {
		status, msg = api.StatusError, "sandbox failed"
	}
	t.End(ctx, sandboxID, status, msg)
}

// End marks a running session stopped or error.
func (t *Tracker) End(ctx context.Context, sandboxID, status, msg string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbTimeout)
	defer cancel()
	if _, err := t.st.EndSession(ctx, sandboxID, status, msg); err != nil {
		t.log.Error("mark sandbox session ended", "sandbox_id", sandboxID, "status", status, "err", err)
	}
}

// TimeoutSet records a sandbox's new end time.
func (t *Tracker) TimeoutSet(ctx context.Context, sandboxID string, end time.Time) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbTimeout)
	defer cancel()
	if err := t.st.SetSessionEnd(ctx, sandboxID, end); err != nil {
		t.log.Error("record sandbox end time", "sandbox_id", sandboxID, "err", err)
	}
}

// Org returns an org by id (the zero Org for "").
func (t *Tracker) Org(ctx context.Context, id string) (store.Org, error) {
	if id == "" {
		return store.Org{}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	o, err := t.st.Org(ctx, id)
	if err != nil {
		return o, errs.Unavailable("database_unavailable", "cannot read the org now").WithCause(err)
	}
	return o, nil
}

// Row is a session as GET /sessions answers it.
type Row struct {
	ID        string            `json:"id"`
	SandboxID string            `json:"sandboxID"`
	OrgID     string            `json:"orgID,omitempty"`
	Template  string            `json:"template"`
	Region    string            `json:"region"`
	WorkerID  string            `json:"workerID"`
	Status    string            `json:"status"`
	Config    api.SandboxConfig `json:"config"`
	Metadata  map[string]string `json:"metadata,omitempty"`
	StartedAt time.Time         `json:"startedAt"`
	EndAt     *time.Time        `json:"endAt,omitempty"`
	StoppedAt *time.Time        `json:"stoppedAt,omitempty"`
	ErrorMsg  string            `json:"errorMsg,omitempty"`
}

// Handler serves GET /sessions?status=&limit=: the caller's org's sessions,
// newest first (every org's for the static key).
func (t *Tracker) Handler() fiber.Handler {
	return func(c *fiber.Ctx) error {
		status := c.Query("status")
		switch status {
		case "", api.StatusRunning, api.StatusStopped, api.StatusError:
		default:
			return errs.Invalid("status must be running, stopped or error")
		}
		limit := c.QueryInt("limit", 100)
		if limit <= 0 || limit > 1000 {
			return errs.Invalid("limit must be between 1 and 1000")
		}
		ctx, cancel := context.WithTimeout(c.UserContext(), dbTimeout)
		defer cancel()
		list, err := t.st.ListSessions(ctx, keyauth.CallerOf(c).OrgID(), status, limit)
		if err != nil {
			return errs.Unavailable("database_unavailable", "cannot list sessions now").WithCause(err)
		}
		out := make([]Row, 0, len(list))
		for _, s := range list {
			out = append(out, Row{
				ID: s.ID, SandboxID: s.SandboxID, OrgID: s.OrgID, Template: s.Template, Region: s.Region, WorkerID: s.WorkerID,
				Status: s.Status, Config: s.Config, Metadata: s.Metadata, StartedAt: s.StartedAt, EndAt: s.EndAt,
				StoppedAt: s.StoppedAt, ErrorMsg: s.ErrorMsg,
			})
		}
		return c.JSON(out)
	}
}
