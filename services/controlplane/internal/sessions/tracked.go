package sessions

import (
	"context"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/worker/httpapi"
	"github.com/opensandbox/opensandbox/services/worker/sandbox"
)

// Tracked wraps an in-process sandbox manager (combined mode with
// PostgreSQL) so that creates take a quota slot and leave a session row, and
// timeouts respect the org's maximum. Kills and timeouts reach the tracker
// through the manager's OnDestroy hook. Every other method (the data path,
// processes, terminals, watch) is the manager's own.
type Tracked struct {
	*sandbox.Manager
	t *Tracker
}

var (
	_ httpapi.Sandboxes   = Tracked{}
	_ httpapi.Interactive = Tracked{}
)

// Track wraps mgr.
func Track(mgr *sandbox.Manager, t *Tracker) Tracked { return Tracked{Manager: mgr, t: t} }

// Create checks the org's limits, creates, and records the session.
func (s Tracked) Create(ctx context.Context, cfg api.SandboxConfig, opts sandbox.CreateOptions) (api.Sandbox, error) {
	org, err := s.t.Org(ctx, opts.OrgID)
	if err != nil {
		return api.Sandbox{}, err
	}
	r, err := s.t.Begin(ctx, org, &cfg)
	if err != nil {
		return api.Sandbox{}, err
	}
	sb, err := s.Manager.Create(ctx, cfg, opts)
	if err != nil {
		s.t.Abort(ctx, r)
		return api.Sandbox{}, err
	}
	if err := s.t.Created(ctx, r, sb, cfg); err != nil {
		s.Manager.Kill(context.WithoutCancel(ctx), sb.SandboxID)
		s.t.Abort(ctx, r)
		return api.Sandbox{}, err
	}
	return sb, nil
}

// SetTimeout refuses a lifetime over the org's maximum and records the new end.
func (s Tracked) SetTimeout(ctx context.Context, id string, d time.Duration) (api.Sandbox, error) {
	orgID, err := s.OrgOf(id)
	if err != nil {
		return api.Sandbox{}, err
	}
	org, err := s.t.Org(ctx, orgID)
	if err != nil {
		return api.Sandbox{}, err
	}
	if err := CheckTimeout(org, int(d.Seconds())); err != nil {
		return api.Sandbox{}, err
	}
	sb, err := s.Manager.SetTimeout(ctx, id, d)
	if err != nil {
		return sb, err
	}
	s.t.TimeoutSet(ctx, id, sb.EndAt)
	return sb, nil
}
