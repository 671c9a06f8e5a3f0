package server

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/opensandbox/opensandbox/services/shared/auth"
	"github.com/opensandbox/opensandbox/services/worker/publisher/publishertest"
)

const testMetricsToken = "metrics-token-0123456789"

// With OPENSANDBOX_METRICS_TOKEN, /metrics takes that token and nothing
// else: not an org's API key (whose holders are customers).
func TestMetricsTokenGuardsMetrics(t *testing.T) {
	c := startCluster(t, func(cfg *Config) { cfg.MetricsToken = testMetricsToken })
	for _, tc := range []struct {
		name   string
		hdr    []string
		status int
	}{
		{"no credential", nil, 401},
		{"an org's API key", []string{"X-API-Key", c.token}, 403},
		{"the metrics token", []string{"Authorization", "Bearer " + testMetricsToken}, 200},
	} {
		resp, body := c.cp.do(t, "GET", "/metrics", nil, append([]string{"X-API-Key", ""}, tc.hdr...)...)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: %d %.200s, want %d", tc.name, resp.StatusCode, body, tc.status)
		}
		if tc.status == 200 && !strings.Contains(string(body), "opensandbox_heartbeats_received_total") {
			t.Errorf("%s: not the control plane's metrics: %.200s", tc.name, body)
		}
	}
}

// GET /health shows the pipeline's figures to anyone and its error text only
// to a caller with credentials.
func TestHealthErrorsOnlyWithCredentials(t *testing.T) {
	app := fiber.New()
	app.Get("/health", healthHandler("control-plane", &events{pub: publishertest.Failing(t)}, func(c *fiber.Ctx) bool {
		return auth.Carries(c, testMetricsToken)
	}))
	get := func(hdr ...string) string {
		req := httptest.NewRequest("GET", "/health", nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := app.Test(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("health %d %s", resp.StatusCode, b)
		}
		return string(b)
	}
	if b := get(); strings.Contains(b, "lastError") || !strings.Contains(b, `"unsynced"`) {
		t.Fatalf("unauthenticated health: %s", b)
	}
	if b := get("X-API-Key", "wrong"); strings.Contains(b, "lastError") {
		t.Fatalf("health with a wrong key: %s", b)
	}
	if b := get("Authorization", "Bearer "+testMetricsToken); !strings.Contains(b, "lastError") {
		t.Fatalf("authenticated health lacks the error: %s", b)
	}
}
