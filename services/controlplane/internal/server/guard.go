package server

import (
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/opensandbox/opensandbox/services/shared/errs"
)

// isLoopbackHost reports a host name or address that only this machine can
// reach: localhost, 127.0.0.0/8, ::1.
func isLoopbackHost(host string) bool {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkUnauthenticated refuses a combined server that would serve without any
// credential check beyond this machine: with no OPENSANDBOX_API_KEY and no
// PostgreSQL (whose API keys are then required), only a loopback listen
// address is allowed.
func (c Config) checkUnauthenticated() error {
	if c.Mode != ModeCombined || c.APIKey != "" || c.DatabaseURL != "" {
		return nil
	}
	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return fmt.Errorf("listen address %q: %w", c.Addr, err)
	}
	if !isLoopbackHost(host) {
		return fmt.Errorf("OPENSANDBOX_HOST=%s would serve sandboxes to the network without authentication: "+
			"set OPENSANDBOX_API_KEY (or DATABASE_URL for stored API keys), or listen on 127.0.0.1", host)
	}
	return nil
}

var (
	errForeignHost   = errs.New(errs.KindForbidden, "forbidden_host", "this server answers only requests addressed to localhost, 127.0.0.1 or [::1]")
	errForeignOrigin = errs.New(errs.KindForbidden, "forbidden_origin", "cross-origin requests are refused by a server without an API key")
)

// localOnly guards a server that runs without credentials on a loopback
// address against the browser: a request must be addressed to a loopback
// host (a DNS-rebinding page sends its own domain in Host), and a request a
// page makes from another origin — a WebSocket upgrade, or a form post that
// would run commands — carries an Origin that does not match; both are
// refused. Tools (SDKs, curl) send no Origin.
func localOnly() fiber.Handler {
	return func(c *fiber.Ctx) error {
		host := string(c.Request().Host()) // the Host header, with its port
		h, _, err := net.SplitHostPort(host)
		if err != nil {
			h = host
		}
		if !isLoopbackHost(h) {
			return errForeignHost
		}
		if origin := c.Get(fiber.HeaderOrigin); origin != "" && !sameOrigin(origin, host) {
			return errForeignOrigin
		}
		return c.Next()
	}
}

// sameOrigin reports whether an Origin header names host (host[:port]).
func sameOrigin(origin, host string) bool {
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	return strings.EqualFold(u.Host, host)
}
