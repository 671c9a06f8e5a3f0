// Package auth authenticates API callers: API keys on the control plane and
// sandbox-scoped tokens on workers.
package auth

import (
	"crypto/subtle"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/opensandbox/opensandbox/services/shared/errs"
)

// APIKeyFrom returns the API key of a request: the X-API-Key header, the
// api_key or token query parameter (browsers cannot set headers on
// WebSockets), a bearer token (Prometheus scrapes and SDKs that use one
// code path for both modes), or a bearer.<key> WebSocket subprotocol.
func APIKeyFrom(c *fiber.Ctx) string {
	if k := c.Get("X-API-Key"); k != "" {
		return k
	}
	if k := c.Query("api_key"); k != "" {
		return k
	}
	if k := c.Query("token"); k != "" {
		return k
	}
	if h := c.Get(fiber.HeaderAuthorization); strings.HasPrefix(h, "Bearer ") {
		return strings.TrimPrefix(h, "Bearer ")
	}
	if p := BearerSubprotocol(c); p != "" {
		return strings.TrimPrefix(p, WebSocketProtocolPrefix)
	}
	return ""
}

// BearerSubprotocol returns the first "bearer.<token>" entry of the
// Sec-WebSocket-Protocol header, or "". A server that accepts it must echo
// it in its handshake answer, or browsers drop the connection.
func BearerSubprotocol(c *fiber.Ctx) string {
	for _, p := range strings.Split(c.Get(fiber.HeaderSecWebSocketProtocol), ",") {
		if p = strings.TrimSpace(p); strings.HasPrefix(p, WebSocketProtocolPrefix) && len(p) > len(WebSocketProtocolPrefix) {
			return p
		}
	}
	return ""
}

// Carries reports whether a request carries key (compared in constant
// time); never for an empty key.
func Carries(c *fiber.Ctx, key string) bool {
	got := APIKeyFrom(c)
	return key != "" && got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(key)) == 1
}

// StaticKey accepts requests carrying key. An empty key disables the check
// (local development without OPENSANDBOX_API_KEY). It runs before any
// handler, so a WebSocket with a wrong key is refused before the upgrade.
func StaticKey(key string) fiber.Handler {
	return func(c *fiber.Ctx) error {
		if key == "" {
			return c.Next()
		}
		got := APIKeyFrom(c)
		if got == "" {
			return errs.ErrUnauthenticated
		}
		if subtle.ConstantTimeCompare([]byte(got), []byte(key)) != 1 {
			return errs.ErrForbidden
		}
		return c.Next()
	}
}
