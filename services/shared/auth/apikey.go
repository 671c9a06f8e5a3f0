// Package auth authenticates API callers: API keys on the control plane and
// sandbox-scoped tokens on workers.
package auth

import (
	"crypto/subtle"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/opensandbox/opensandbox/services/shared/errs"
)

// APIKeyFrom returns the API key of a request: the X-API-Key header, or the
// api_key query parameter (browsers cannot set headers on WebSockets), or a
// bearer token (Prometheus scrapes send credentials that way).
func APIKeyFrom(c *fiber.Ctx) string {
	if k := c.Get("X-API-Key"); k != "" {
		return k
	}
	if k := c.Query("api_key"); k != "" {
		return k
	}
	if h := c.Get(fiber.HeaderAuthorization); strings.HasPrefix(h, "Bearer ") {
		return strings.TrimPrefix(h, "Bearer ")
	}
	return ""
}

// StaticKey accepts requests carrying key. An empty key disables the check
// (local development without OPENSANDBOX_API_KEY).
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
