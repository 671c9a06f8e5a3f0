package server

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/opensandbox/opensandbox/services/shared/obs"
	"github.com/opensandbox/opensandbox/services/worker/sandbox"
	"github.com/opensandbox/opensandbox/services/worker/sandboxtest"
)

func TestCombinedRefusesToServeTheNetworkWithoutAKey(t *testing.T) {
	for _, tc := range []struct {
		addr, key, db string
		ok            bool
	}{
		{"127.0.0.1:8080", "", "", true},
		{"[::1]:8080", "", "", true},
		{"localhost:8080", "", "", true},
		{"0.0.0.0:8080", "", "", false},
		{"10.0.0.5:8080", "", "", false},
		{"[::]:8080", "", "", false},
		{"0.0.0.0:8080", "a-key", "", true},
		{"0.0.0.0:8080", "", "postgres://x/y", true}, // stored keys are required then
	} {
		scfg := sandbox.DefaultConfig()
		scfg.AgentBinary = "/bin/true"
		cfg := Config{Mode: ModeCombined, Addr: tc.addr, APIKey: tc.key, DatabaseURL: tc.db, MaxUpload: 1, Sandbox: scfg}
		err := cfg.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("%s key=%q db=%q: %v, want ok=%v", tc.addr, tc.key, tc.db, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "OPENSANDBOX_API_KEY") {
			t.Errorf("%s: error %q does not say what to set", tc.addr, err)
		}
	}
}

// Without a key, the combined server answers only requests addressed to a
// loopback name (DNS rebinding) and refuses cross-origin requests and
// WebSocket upgrades; with a key, the key is the guard.
func TestCombinedWithoutKeyRefusesBrowsersOfOtherOrigins(t *testing.T) {
	cfg := Config{Mode: ModeCombined, MaxUpload: 1 << 20, Sandbox: sandbox.DefaultConfig()}
	app := NewCombined(sandboxtest.Logger(t), obs.NewRegistry(), nil, cfg)
	for _, tc := range []struct {
		name, host, origin string
		upgrade            bool
		status             int
	}{
		{"localhost", "localhost:8080", "", false, 200},
		{"127.0.0.1", "127.0.0.1:8080", "", false, 200},
		{"::1", "[::1]:8080", "", false, 200},
		{"same origin", "localhost:8080", "http://localhost:8080", false, 200},
		{"rebinding", "evil.example:8080", "", false, 403},
		{"rebinding, no port", "attacker.example", "", false, 403},
		{"cross-origin post", "localhost:8080", "http://evil.example", false, 403},
		{"cross-origin websocket", "127.0.0.1:8080", "http://evil.example", true, 403},
		{"other port websocket", "127.0.0.1:8080", "http://127.0.0.1:3000", true, 403},
		{"null origin", "127.0.0.1:8080", "null", true, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/health", nil)
			req.Host = tc.host
			if tc.origin != "" {
				req.Header.Set("Origin", tc.origin)
			}
			if tc.upgrade {
				req.Header.Set("Connection", "Upgrade")
				req.Header.Set("Upgrade", "websocket")
			}
			resp, err := app.Test(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
		})
	}
	cfg.APIKey = "k"
	keyed := NewCombined(sandboxtest.Logger(t), obs.NewRegistry(), nil, cfg)
	req := httptest.NewRequest("GET", "/health", nil)
	req.Host = "sandboxes.example.com"
	req.Header.Set("Origin", "https://dashboard.example.com")
	if resp, err := keyed.Test(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("with a key the Host is not restricted: %v %v", err, resp.StatusCode)
	}
}

func TestDashboardSettings(t *testing.T) {
	base := func() Config {
		scfg := sandbox.DefaultConfig()
		scfg.AgentBinary = "/bin/true"
		return Config{Mode: ModeCombined, Addr: "127.0.0.1:8080", DatabaseURL: "postgres://x/y", MaxUpload: 1, Sandbox: scfg,
			WorkOSClientID: "client_01", WorkOSAPIKey: "sk_test", WorkOSAPIURL: "https://api.workos.com", PublicURL: "https://sandboxes.example.com"}
	}
	if err := base().Validate(); err != nil {
		t.Fatalf("a complete configuration: %v", err)
	}
	for name, tc := range map[string]struct {
		change func(*Config)
		says   string
	}{
		"no api key":      {func(c *Config) { c.WorkOSAPIKey = "" }, "WORKOS_API_KEY"},
		"no client id":    {func(c *Config) { c.WorkOSClientID = "" }, "WORKOS_CLIENT_ID"},
		"no database":     {func(c *Config) { c.DatabaseURL = "" }, "DATABASE_URL"},
		"no public url":   {func(c *Config) { c.PublicURL = "" }, "OPENSANDBOX_PUBLIC_URL"},
		"relative url":    {func(c *Config) { c.PublicURL = "sandboxes.example.com" }, "OPENSANDBOX_PUBLIC_URL"},
		"url with a path": {func(c *Config) { c.PublicURL = "https://example.com/app" }, "OPENSANDBOX_PUBLIC_URL"},
		"bad workos url":  {func(c *Config) { c.WorkOSAPIURL = "ftp://api.workos.com" }, "WORKOS_API_URL"},
	} {
		c := base()
		tc.change(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v, want an error naming %s", name, err, tc.says)
		}
	}
	// Without any WorkOS setting there is no dashboard, and nothing to check.
	c := base()
	c.WorkOSClientID, c.WorkOSAPIKey, c.PublicURL = "", "", ""
	if err := c.Validate(); err != nil || c.dashboard() {
		t.Fatalf("no dashboard: %v, dashboard()=%v", err, c.dashboard())
	}
}
