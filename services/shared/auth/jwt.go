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

// SandboxClaims are the claims of a sandbox-scoped token: it grants access to
// one sandbox on one worker until the sandbox's end time.
type SandboxClaims struct {
	OrgID     string `json:"org_id,omitempty"`
	SandboxID string `json:"sandbox_id"`
	WorkerID  string `json:"worker_id"`
	jwt.RegisteredClaims
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

// Issue signs a token for a sandbox that expires at exp.
func (t *SandboxTokens) Issue(orgID, sandboxID, workerID string, exp time.Time) (string, error) {
	now := t.now()
	c := SandboxClaims{
		OrgID: orgID, SandboxID: sandboxID, WorkerID: workerID,
		RegisteredClaims: jwt.RegisteredClaims{
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp),
		},
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(t.secret)
	if err != nil {
		return "", fmt.Errorf("sign sandbox token: %w", err)
	}
	return s, nil
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
// with a valid token whose sandbox_id is the sandbox in the URL and whose
// worker_id is this worker. onFail, when set, observes every refusal (metrics).
func SandboxJWT(tokens *SandboxTokens, workerID string, onFail func(reason string)) fiber.Handler {
	fail := func(reason string, err error) error {
		if onFail != nil {
			onFail(reason)
		}
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
		c.Locals(LocalSandboxClaims, claims)
		if proto != "" {
			c.Locals(LocalWebSocketProtocol, proto)
		}
		return c.Next()
	}
}
