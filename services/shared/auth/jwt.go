package auth

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/golang-jwt/jwt/v5"
	"github.com/opensandbox/opensandbox/services/shared/errs"
)

// MinSecretLen is the shortest HMAC secret accepted for sandbox tokens.
const MinSecretLen = 16

// ErrTokenExpired is a sandbox token past its expiry: the caller refreshes it
// (POST /sandboxes/:id/token on the control plane).
var ErrTokenExpired = &errs.Error{Kind: errs.KindUnauthenticated, Code: "token_expired", Message: "sandbox token expired"}

// errTokenOutdated is a token of an older control plane, without a scope:
// it answers like an expired one, so SDKs fetch a scoped token on their own.
var errTokenOutdated = &errs.Error{Kind: errs.KindUnauthenticated, Code: "token_expired", Message: "sandbox token of an older version (no scope); refresh it"}

// Scopes of a sandbox token: what it may do on the data path.
const (
	// ScopeRead reads: the sandbox's description, files (read, list,
	// stat) and the list of its processes. No stream, watch or terminal.
	ScopeRead = "read"
	// ScopeFull does everything the data path offers.
	ScopeFull = "full"
)

// MaxTokenLifetime bounds a sandbox token, whatever the sandbox's end: it
// is also how long a revoked key's id must stay on revocation lists.
const MaxTokenLifetime = 24 * time.Hour

// SandboxClaims are the claims of a sandbox-scoped token: it grants access to
// one sandbox on one worker, with a scope, until the sandbox's end time (at
// most MaxTokenLifetime), for as long as the API key that asked for it is
// not revoked.
type SandboxClaims struct {
	OrgID     string `json:"org_id,omitempty"`
	SandboxID string `json:"sandbox_id"`
	WorkerID  string `json:"worker_id"`
	Scope     string `json:"scope"`
	// KeyID is the API key the token was minted for; "" only for the
	// static key of the configuration, which cannot be revoked.
	KeyID string `json:"key_id,omitempty"`
	jwt.RegisteredClaims
}

// Grant is what a token grants.
type Grant struct {
	OrgID, SandboxID, WorkerID string
	Scope                      string // ScopeRead or ScopeFull
	KeyID                      string // the minting API key ("" for the static key)
	Expires                    time.Time
}

// SandboxTokens issues and verifies sandbox tokens (HS256).
type SandboxTokens struct {
	secret []byte
	now    func() time.Time
}

// NewSandboxTokens returns a token issuer/verifier keyed by secret.
func NewSandboxTokens(secret string) (*SandboxTokens, error) {
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("sandbox token secret must be at least %d bytes", MinSecretLen)
	}
	return &SandboxTokens{secret: []byte(secret), now: time.Now}, nil
}

// Issue signs a token for g and returns it with its expiry: g.Expires, or
// MaxTokenLifetime from now if that comes first.
func (t *SandboxTokens) Issue(g Grant) (string, time.Time, error) {
	if g.Scope != ScopeRead && g.Scope != ScopeFull {
		return "", time.Time{}, fmt.Errorf("sandbox token scope %q", g.Scope)
	}
	now := t.now()
	exp := g.Expires
	if limit := now.Add(MaxTokenLifetime); exp.After(limit) {
		exp = limit
	}
	c := SandboxClaims{
		OrgID: g.OrgID, SandboxID: g.SandboxID, WorkerID: g.WorkerID, Scope: g.Scope, KeyID: g.KeyID,
		RegisteredClaims: jwt.RegisteredClaims{
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp),
		},
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(t.secret)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign sandbox token: %w", err)
	}
	// The claim has whole seconds: answer the expiry the token carries.
	return s, c.ExpiresAt.Time, nil
}

// Verify checks a token's signature, algorithm and expiry. An expired token
// answers ErrTokenExpired (401); any other defect errs.ErrForbidden (403).
func (t *SandboxTokens) Verify(token string) (SandboxClaims, error) {
	var c SandboxClaims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return t.secret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(t.now),
	)
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return c, ErrTokenExpired
	case err != nil:
		return c, errs.ErrForbidden.WithCause(err)
	case c.SandboxID == "":
		return c, errs.ErrForbidden.WithCause(errors.New("token has no sandbox_id"))
	case c.Scope == "":
		return c, errTokenOutdated
	case c.Scope != ScopeRead && c.Scope != ScopeFull:
		return c, errs.ErrForbidden.WithCause(fmt.Errorf("token scope %q", c.Scope))
	}
	return c, nil
}

// WebSocketProtocolPrefix marks a token carried as a WebSocket subprotocol
// ("bearer.<jwt>"): browsers cannot set headers on a WebSocket.
const WebSocketProtocolPrefix = "bearer."

// LocalSandboxClaims is the Fiber local holding the verified SandboxClaims.
const LocalSandboxClaims = "sandboxClaims"

// LocalWebSocketProtocol is the Fiber local holding the subprotocol the token
// came in, which a WebSocket handler must echo in its upgrade answer.
const LocalWebSocketProtocol = "sandboxTokenProtocol"

// SandboxTokenFrom returns the token of a request and, when it came as a
// WebSocket subprotocol, that subprotocol.
func SandboxTokenFrom(c *fiber.Ctx) (token, protocol string) {
	if h := c.Get(fiber.HeaderAuthorization); len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:]), ""
	}
	if q := c.Query("token"); q != "" {
		return q, ""
	}
	for _, p := range strings.Split(c.Get(fiber.HeaderSecWebSocketProtocol), ",") {
		p = strings.TrimSpace(p)
		if strings.HasPrefix(p, WebSocketProtocolPrefix) {
			return strings.TrimPrefix(p, WebSocketProtocolPrefix), p
		}
	}
	return "", ""
}

// SandboxIDFromPath returns the <id> of a /sandboxes/<id>[/...] path.
func SandboxIDFromPath(path string) string {
	rest, ok := strings.CutPrefix(path, "/sandboxes/")
	if !ok {
		return ""
	}
	id, _, _ := strings.Cut(rest, "/")
	return id
}

// SandboxJWT is the worker's data-path middleware: it admits a request only
// with a valid token whose sandbox_id is the sandbox in the URL, whose
// worker_id is this worker and whose key rev does not know as revoked
// (rev nil: no revocation checks). The request then carries the token's
// scope (routes that need more refuse it with ErrInsufficientScope) and a
// context that ends when the key is revoked. onFail, when set, observes
// every refusal (metrics).
func SandboxJWT(tokens *SandboxTokens, workerID string, rev *Revocations, onFail func(reason string)) fiber.Handler {
	if onFail == nil {
		onFail = func(string) {}
	}
	fail := func(reason string, err error) error {
		onFail(reason)
		return err
	}
	return func(c *fiber.Ctx) error {
		tok, proto := SandboxTokenFrom(c)
		if tok == "" {
			return fail("missing", errs.ErrUnauthenticated)
		}
		claims, err := tokens.Verify(tok)
		if errors.Is(err, ErrTokenExpired) {
			return fail("expired", err)
		}
		if err != nil {
			return fail("invalid", err)
		}
		id := SandboxIDFromPath(c.Path())
		if id == "" || claims.SandboxID != id {
			return fail("wrong_sandbox", errs.New(errs.KindForbidden, "forbidden", "token is not valid for this sandbox"))
		}
		if workerID != "" && claims.WorkerID != workerID {
			return fail("wrong_worker", errs.New(errs.KindForbidden, "forbidden", "token is not valid on this worker"))
		}
		if rev != nil {
			if err := rev.Check(claims.KeyID); err != nil {
				return fail(errs.As(err).Code, err)
			}
			c.SetUserContext(rev.Bind(c.UserContext(), claims.KeyID))
		}
		c.Locals(LocalSandboxClaims, claims)
		SetScope(c, claims.Scope, onFail)
		if proto != "" {
			c.Locals(LocalWebSocketProtocol, proto)
		}
		return rev.Explain(c.UserContext(), claims.KeyID, c.Next())
	}
}

// ErrInsufficientScope refuses a request its credentials do not cover.
var ErrInsufficientScope = &errs.Error{Kind: errs.KindForbidden, Code: "insufficient_scope",
	Message: "read-only credentials: commands, processes, terminals, watches and file changes need a sandboxes:write key"}

// Fiber locals of a request's scope and of who observes its refusal.
const (
	localScope        = "osbScope"
	localScopeRefusal = "osbScopeRefusal"
)

// SetScope records what an authenticated request may do (ScopeRead or
// ScopeFull); onRefusal, when set, observes a route refusing it.
func SetScope(c *fiber.Ctx, scope string, onRefusal func(reason string)) {
	c.Locals(localScope, scope)
	if onRefusal != nil {
		c.Locals(localScopeRefusal, onRefusal)
	}
}

// ScopeOf is what a request may do: ScopeFull unless an authentication
// middleware recorded less.
func ScopeOf(c *fiber.Ctx) string {
	if s, _ := c.Locals(localScope).(string); s != "" {
		return s
	}
	return ScopeFull
}

// RequireFull lets through only requests with ScopeFull: the route handler
// of everything on the data path that is not a plain read.
func RequireFull(c *fiber.Ctx) error {
	if ScopeOf(c) == ScopeFull {
		return c.Next()
	}
	if f, ok := c.Locals(localScopeRefusal).(func(string)); ok {
		f("insufficient_scope")
	}
	return ErrInsufficientScope
}
