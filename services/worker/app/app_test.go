package app

import (
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/opensandbox/opensandbox/services/shared/obs"
	"github.com/opensandbox/opensandbox/services/worker/publisher/publishertest"
	"github.com/opensandbox/opensandbox/services/worker/sandbox"
)

type nopPublisher struct{}

func (nopPublisher) Publish(string, []byte) error { return nil }
func (nopPublisher) Subscribe(string, nats.MsgHandler) (*nats.Subscription, error) {
	return &nats.Subscription{}, nil
}

func testWorker(t *testing.T, metricsToken string) *Worker {
	t.Helper()
	scfg := sandbox.DefaultConfig()
	scfg.WorkerID, scfg.Region = "w1", "eu"
	w, err := New(slog.New(slog.NewTextHandler(io.Discard, nil)), obs.NewRegistry(), nil, nopPublisher{}, Config{
		HTTPURL: "http://127.0.0.1:1", GRPCAddr: "127.0.0.1:2", JWTSecret: "jwt-secret-0123456789",
		ClusterSecret: "cluster-secret-0123456789", MetricsToken: metricsToken, MaxUpload: 1, Sandbox: scfg,
	})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// The worker's /metrics takes the metrics-only token when one is set, and
// then no longer the cluster secret (which Prometheus must not hold).
func TestMetricsTokenReplacesTheClusterSecret(t *testing.T) {
	for _, tc := range []struct {
		name, configured, sent string
		status                 int
	}{
		{"token set: token", "metrics-token-0123456789", "metrics-token-0123456789", 200},
		{"token set: cluster secret", "metrics-token-0123456789", "cluster-secret-0123456789", 403},
		{"token set: nothing", "metrics-token-0123456789", "", 401},
		{"no token: cluster secret", "", "cluster-secret-0123456789", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/metrics", nil)
			if tc.sent != "" {
				req.Header.Set("Authorization", "Bearer "+tc.sent)
			}
			resp, err := testWorker(t, tc.configured).HTTP().Test(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
		})
	}
}

// The worker's unauthenticated /health shows its publisher's backlog but
// not its last error, which it shows to the metrics token.
func TestHealthShowsErrorsOnlyWithCredentials(t *testing.T) {
	w := testWorker(t, "metrics-token-0123456789")
	w.SetPublisher(publishertest.Failing(t))
	get := func(token string) string {
		req := httptest.NewRequest("GET", "/health", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := w.HTTP().Test(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if b := get(""); strings.Contains(b, "lastError") || !strings.Contains(b, "unsynced") {
		t.Fatalf("unauthenticated health: %s", b)
	}
	if b := get("metrics-token-0123456789"); !strings.Contains(b, "lastError") {
		t.Fatalf("health with the metrics token: %s", b)
	}
}
