// Package keyauth authenticates API callers of the control plane by API key:
// the static key of the configuration, or keys stored (as SHA-256 hashes) in
// PostgreSQL with their org, scopes, expiry and revocation.
package keyauth

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/store"
	"github.com/opensandbox/opensandbox/services/shared/auth"
	"github.com/opensandbox/opensandbox/services/shared/errs"
	"github.com/opensandbox/opensandbox/services/worker/httpapi"
)

// Scopes a key can carry.
const (
	ScopeWrite = "sandboxes:write" // the org's sandboxes and sessions: everything
	ScopeRead  = "sandboxes:read"  // GET and HEAD only
	// ScopeAdmin is for operators: the cluster-wide routes (GET /workers,
	// with the workers' internal addresses). sandboxes:write does not
	// include it; only "*" and the static key do.
	ScopeAdmin = "admin"
	ScopeAll   = "*"
)

// Keys finds stored keys (the store).
type Keys interface {
	KeyByHash(ctx context.Context, hash string) (store.KeyOwner, error)
	TouchKey(ctx context.Context, id string) error
}

var _ Keys = (*store.Store)(nil)

// Caller is who made a request.
type Caller struct {
	Static     bool      // the configured static key: no org, no quota
	Org        store.Org // zero for the static key
	KeyID      string
	Scopes     []string
	KeyExpires *time.Time // the key's own expiry, if it has one
}

// OrgID is the caller's org id, "" for the static key.
func (c Caller) OrgID() string { return c.Org.ID }

// DataScope is what the caller may do on the data path (and so the scope
// of the sandbox tokens it gets): everything with sandboxes:write (or *)
// and with the static key, reads only otherwise.
func (c Caller) DataScope() string {
	if c.Static || slices.Contains(c.Scopes, ScopeWrite) || slices.Contains(c.Scopes, ScopeAll) {
		return auth.ScopeFull
	}
	return auth.ScopeRead
}

const localCaller = "caller"

// SetCaller makes caller the authenticated caller of a request (the
// dashboard's signed-in user acts for its org).
func SetCaller(c *fiber.Ctx, caller Caller) {
	c.Locals(localCaller, caller)
	c.Locals(httpapi.LocalOrgID, caller.OrgID())
}

// CallerOf returns the authenticated caller of a request.
func CallerOf(c *fiber.Ctx) Caller {
	v, _ := c.Locals(localCaller).(Caller)
	return v
}

// Errors of refused keys (all 403 but for a missing key).
var (
	errUnknown = errs.New(errs.KindForbidden, "forbidden", "invalid API key")
	errRevoked = errs.New(errs.KindForbidden, "forbidden", "API key revoked")
	errExpired = errs.New(errs.KindForbidden, "forbidden", "API key expired")
	errScope   = errs.New(errs.KindForbidden, "insufficient_scope", "API key lacks the scope for this request")
)

// Authenticator is the middleware's state.
type Authenticator struct {
	log    *slog.Logger
	static string
	keys   Keys              // nil without PostgreSQL
	rev    *auth.Revocations // nil: open connections outlive a revocation
	onFail func(reason string)
	now    func() time.Time
}

// New returns an authenticator; keys may be nil (static key only), onFail
// observes refusals by reason.
func New(log *slog.Logger, static string, keys Keys, onFail func(reason string)) *Authenticator {
	if onFail == nil {
		onFail = func(string) {}
	}
	return &Authenticator{log: log, static: static, keys: keys, onFail: onFail, now: time.Now}
}

// EndConnectionsWith makes the requests of a stored key run in a context
// that rev ends when the key is revoked (combined mode: its streams,
// watches and terminals close; each new request checks the key anyway).
func (a *Authenticator) EndConnectionsWith(rev *auth.Revocations) { a.rev = rev }

// Middleware authenticates every request it sees, scopes it to the key's
// org and records what the key may do on the data path (auth.SetScope).
func (a *Authenticator) Middleware() fiber.Handler {
	return func(c *fiber.Ctx) error {
		caller, err := a.authenticate(c.UserContext(), auth.APIKeyFrom(c))
		if err != nil {
			return err
		}
		if !caller.Static && !Allowed(caller.Scopes, c.Method()) && !isTokenRequest(c) {
			a.onFail(errScope.Code)
			return errScope
		}
		SetCaller(c, caller)
		auth.SetScope(c, caller.DataScope(), a.onFail)
		if a.rev != nil && caller.KeyID != "" {
			c.SetUserContext(a.rev.Bind(c.UserContext(), caller.KeyID))
		}
		return a.rev.Explain(c.UserContext(), caller.KeyID, c.Next())
	}
}

// isTokenRequest reports a POST /sandboxes/:id/token: a read-only key may
// renew its (read-only) sandbox token, though it posts.
func isTokenRequest(c *fiber.Ctx) bool {
	rest, ok := strings.CutPrefix(c.Path(), "/sandboxes/")
	id, tail, _ := strings.Cut(rest, "/")
	return ok && c.Method() == fiber.MethodPost && id != "" && tail == "token"
}

// Valid reports whether a request carries a valid key, without refusing it
// (routes that show more to authenticated callers, like GET /health). A
// request with no key at all is not counted as a failure.
func (a *Authenticator) Valid(c *fiber.Ctx) bool {
	key := auth.APIKeyFrom(c)
	if key == "" {
		return false
	}
	_, err := a.authenticate(c.UserContext(), key)
	return err == nil
}

// RequireScope refuses callers whose key lacks scope (403); the static key
// has every scope. It runs after Middleware.
func RequireScope(scope string) fiber.Handler {
	return func(c *fiber.Ctx) error {
		caller := CallerOf(c)
		if !caller.Static && !slices.Contains(caller.Scopes, scope) && !slices.Contains(caller.Scopes, ScopeAll) {
			return errScope
		}
		return c.Next()
	}
}

func (a *Authenticator) authenticate(ctx context.Context, key string) (Caller, error) {
	if key == "" {
		a.onFail("missing")
		return Caller{}, errs.ErrUnauthenticated
	}
	if a.static != "" && subtle.ConstantTimeCompare([]byte(key), []byte(a.static)) == 1 {
		return Caller{Static: true}, nil
	}
	if a.keys == nil {
		a.onFail("unknown")
		return Caller{}, errUnknown
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	owner, err := a.keys.KeyByHash(lctx, store.HashKey(key))
	switch {
	case errors.Is(err, store.ErrNotFound):
		a.onFail("unknown")
		return Caller{}, errUnknown
	case err != nil:
		a.onFail("store")
		return Caller{}, errs.Unavailable("auth_unavailable", "cannot check the API key now").WithCause(err)
	case owner.Key.RevokedAt != nil:
		a.onFail("revoked")
		return Caller{}, errRevoked
	case owner.Key.ExpiresAt != nil && a.now().After(*owner.Key.ExpiresAt):
		a.onFail("expired")
		return Caller{}, errExpired
	}
	if owner.Key.LastUsed == nil || a.now().Sub(*owner.Key.LastUsed) > time.Minute {
		go a.touch(context.WithoutCancel(ctx), owner.Key.ID)
	}
	return Caller{Org: owner.Org, KeyID: owner.Key.ID, Scopes: owner.Key.Scopes, KeyExpires: owner.Key.ExpiresAt}, nil
}

func (a *Authenticator) touch(ctx context.Context, id string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := a.keys.TouchKey(ctx, id); err != nil {
		a.log.Warn("record API key use", "key_id", id, "err", err)
	}
}

// Allowed reports whether scopes permit a request with method.
func Allowed(scopes []string, method string) bool {
	if slices.Contains(scopes, ScopeAll) || slices.Contains(scopes, ScopeWrite) {
		return true
	}
	// An admin-only key reads (its routes are GETs; RequireScope guards them).
	return (method == fiber.MethodGet || method == fiber.MethodHead) && (slices.Contains(scopes, ScopeRead) || slices.Contains(scopes, ScopeAdmin))
}
