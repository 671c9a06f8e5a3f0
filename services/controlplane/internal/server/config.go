// Package server wires and runs the API server in its modes: combined (the
// whole API and the worker in one process, PostgreSQL optional) and server
// (the control plane alone, workers over gRPC).
package server

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/keyauth"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/registry"
	"github.com/opensandbox/opensandbox/services/shared/auth"
	"github.com/opensandbox/opensandbox/services/shared/config"
	"github.com/opensandbox/opensandbox/services/shared/grpcx"
	"github.com/opensandbox/opensandbox/services/shared/natsx"
	"github.com/opensandbox/opensandbox/services/worker/app"
	"github.com/opensandbox/opensandbox/services/worker/publisher"
	"github.com/opensandbox/opensandbox/services/worker/sandbox"
)

// Modes.
const (
	ModeCombined = "combined"
	ModeServer   = "server"
)

// Config is the server's configuration, read from OPENSANDBOX_* variables.
type Config struct {
	Mode   string // combined or server
	Addr   string
	APIKey string // static key; in PostgreSQL modes it works beside stored keys
	// MetricsToken, when set, is the only credential of GET /metrics (a
	// bearer token for Prometheus that opens nothing else).
	MetricsToken string
	LogLevel     string
	PodmanURI    string
	OCIRuntime   string
	MaxUpload    int64
	Sandbox      sandbox.Config

	DatabaseURL string // PostgreSQL: API keys, quotas, sessions (required in server mode)
	Migrate     bool   // apply missing migrations at start-up
	RunSyncer   bool   // with PostgreSQL, consume sandbox events into it in-process
	// EventsMaxBytes bounds SANDBOX_EVENTS where a syncer consumes it (with
	// PostgreSQL): a work queue that refuses events when full.
	EventsMaxBytes int64
	// EventsPerMessage bounds the events of a sandbox that share one
	// JetStream message (1: every event its own message).
	EventsPerMessage int

	// Server mode.
	NATSURL       string
	JWTSecret     string // signs sandbox tokens (the workers verify them)
	WorkerSecret  string // the control plane's credential on workers' gRPC
	DefaultRegion string
	// RegionFallback (OPENSANDBOX_REGION_FALLBACK, colon-separated) is the
	// order of the regions a create falls back to when its own has no
	// capacity, unless it asks for strictRegion.
	RegionFallback []string
	StaleAfter     time.Duration
	// Registry is where workers are found: "nats" (heartbeats, the default)
	// or "consul" (the catalog of every datacenter; heartbeats then carry
	// only the load).
	Registry string
	// Consul is the client of the local Consul agent (set at start-up with
	// the Consul registry, from CONSUL_HTTP_ADDR and the other CONSUL_*).
	Consul *consulapi.Client
	// Autoscaler (server mode): off unless OPENSANDBOX_AUTOSCALER names a pool.
	Autoscaler AutoscalerConfig
	// GRPCTLS dials workers over TLS: their certificates verified against
	// the CA, this certificate presented for mutual TLS.
	GRPCTLS grpcx.TLSFiles

	// The web dashboard, with PostgreSQL: served at /dashboard/ when WorkOS
	// is configured (sign-in through AuthKit).
	WorkOSClientID string
	WorkOSAPIKey   string
	WorkOSAPIURL   string
	PublicURL      string // the control plane as browsers reach it
	PersonalOrgs   bool   // new users outside any WorkOS organization get an org of their own

	// RevocationInterval is how often the list of revoked API keys is read
	// from PostgreSQL and announced (to workers; in combined mode to the
	// process itself); 0 means keyauth.DefaultRevocationInterval.
	RevocationInterval time.Duration
}

// revocationInterval is RevocationInterval or its default.
func (c Config) revocationInterval() time.Duration {
	return cmp.Or(c.RevocationInterval, keyauth.DefaultRevocationInterval)
}

// dashboard reports whether the web dashboard is configured.
func (c Config) dashboard() bool { return c.WorkOSClientID != "" || c.WorkOSAPIKey != "" }

// eventStream is the policy of SANDBOX_EVENTS in this configuration: consumed
// wherever PostgreSQL is (a syncer, in-process or not, writes it there),
// bounded and dropping the oldest where nothing consumes it.
func (c Config) eventStream() natsx.StreamPolicy {
	if c.Mode == ModeServer || c.DatabaseURL != "" {
		return natsx.ConsumedStream(c.EventsMaxBytes)
	}
	return natsx.UnconsumedStream
}

// LoadConfig reads the environment and validates the result.
func LoadConfig() (Config, error) {
	e := &config.Env{}
	c := Config{
		Mode:               e.String("OPENSANDBOX_MODE", ModeCombined),
		Addr:               net.JoinHostPort(e.String("OPENSANDBOX_HOST", "127.0.0.1"), e.String("OPENSANDBOX_PORT", "8080")),
		APIKey:             e.String("OPENSANDBOX_API_KEY", ""),
		MetricsToken:       e.String("OPENSANDBOX_METRICS_TOKEN", ""),
		LogLevel:           e.String("OPENSANDBOX_LOG_LEVEL", "info"),
		PodmanURI:          e.String("OPENSANDBOX_PODMAN_URI", "unix:///run/opensandbox/podman.sock"),
		OCIRuntime:         e.String("OPENSANDBOX_OCI_RUNTIME", ""),
		MaxUpload:          e.Int64("OPENSANDBOX_MAX_UPLOAD_BYTES", 10<<30),
		Sandbox:            sandbox.ConfigFromEnv(e),
		DatabaseURL:        e.String("DATABASE_URL", ""),
		Migrate:            e.Bool("OPENSANDBOX_MIGRATE", true),
		RunSyncer:          e.Bool("OPENSANDBOX_RUN_SYNCER", true),
		EventsMaxBytes:     e.Int64("OPENSANDBOX_EVENTS_MAX_BYTES", natsx.DefaultEventsMaxBytes),
		EventsPerMessage:   e.Int("OPENSANDBOX_EVENTS_PER_MESSAGE", publisher.DefaultEventsPerMessage),
		NATSURL:            e.String("NATS_URL", ""),
		JWTSecret:          e.String("OPENSANDBOX_JWT_SECRET", ""),
		WorkerSecret:       e.String("OPENSANDBOX_WORKER_SECRET", ""),
		DefaultRegion:      e.String("OPENSANDBOX_DEFAULT_REGION", "local"),
		WorkOSClientID:     e.String("WORKOS_CLIENT_ID", ""),
		WorkOSAPIKey:       e.String("WORKOS_API_KEY", ""),
		WorkOSAPIURL:       e.String("WORKOS_API_URL", "https://api.workos.com"),
		PublicURL:          e.String("OPENSANDBOX_PUBLIC_URL", ""),
		PersonalOrgs:       e.Bool("OPENSANDBOX_DASHBOARD_PERSONAL_ORGS", false),
		StaleAfter:         e.Duration("OPENSANDBOX_WORKER_STALE_AFTER", registry.DefaultStaleAfter),
		RevocationInterval: e.Duration("OPENSANDBOX_REVOCATION_INTERVAL", keyauth.DefaultRevocationInterval),
		Registry:           e.String("OPENSANDBOX_REGISTRY", app.RegistryNATS),
		RegionFallback:     splitRegions(e.String("OPENSANDBOX_REGION_FALLBACK", "")),
		GRPCTLS: grpcx.TLSFiles{
			Cert: e.String("OPENSANDBOX_GRPC_TLS_CERT", ""),
			Key:  e.String("OPENSANDBOX_GRPC_TLS_KEY", ""),
			CA:   e.String("OPENSANDBOX_GRPC_TLS_CA", ""),
		},
	}
	c.Autoscaler = loadAutoscalerConfig(e, c.DefaultRegion)
	if err := e.Err(); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// splitRegions reads a colon-separated region list.
func splitRegions(s string) []string {
	var out []string
	for _, r := range strings.Split(s, ":") {
		if r = strings.TrimSpace(r); r != "" {
			out = append(out, r)
		}
	}
	return out
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.MaxUpload <= 0 {
		return errors.New("OPENSANDBOX_MAX_UPLOAD_BYTES must be positive")
	}
	if c.MetricsToken != "" && len(c.MetricsToken) < auth.MinSecretLen {
		return fmt.Errorf("OPENSANDBOX_METRICS_TOKEN must be at least %d bytes", auth.MinSecretLen)
	}
	if c.EventsMaxBytes < 0 {
		return errors.New("OPENSANDBOX_EVENTS_MAX_BYTES must be positive")
	}
	if c.EventsPerMessage < 0 || c.EventsPerMessage > 1000 {
		return errors.New("OPENSANDBOX_EVENTS_PER_MESSAGE must be between 1 and 1000")
	}
	if c.RevocationInterval < 0 || c.RevocationInterval > keyauth.MaxRevocationInterval {
		return fmt.Errorf("OPENSANDBOX_REVOCATION_INTERVAL must be between 0 (the default, %s) and %s", keyauth.DefaultRevocationInterval, keyauth.MaxRevocationInterval)
	}
	if c.dashboard() {
		if err := c.checkDashboard(); err != nil {
			return err
		}
	}
	switch c.Mode {
	case ModeCombined:
		if err := c.checkUnauthenticated(); err != nil {
			return err
		}
		return c.Sandbox.Validate()
	case ModeServer:
		switch {
		case c.DatabaseURL == "":
			return errors.New("server mode needs DATABASE_URL (make infra-up writes it to .env.local)")
		case c.NATSURL == "":
			return errors.New("server mode needs NATS_URL (make infra-up writes it to .env.local)")
		case len(c.JWTSecret) < auth.MinSecretLen:
			return fmt.Errorf("server mode needs OPENSANDBOX_JWT_SECRET of at least %d bytes", auth.MinSecretLen)
		case len(c.WorkerSecret) < auth.MinSecretLen:
			return fmt.Errorf("server mode needs OPENSANDBOX_WORKER_SECRET of at least %d bytes", auth.MinSecretLen)
		case c.DefaultRegion == "":
			return errors.New("OPENSANDBOX_DEFAULT_REGION must not be empty")
		case c.StaleAfter <= 0:
			return errors.New("OPENSANDBOX_WORKER_STALE_AFTER must be positive")
		case c.Registry != app.RegistryNATS && c.Registry != app.RegistryConsul:
			return fmt.Errorf("OPENSANDBOX_REGISTRY %q: want %s or %s", c.Registry, app.RegistryNATS, app.RegistryConsul)
		case c.Sandbox.DefaultTimeout <= 0:
			return errors.New("OPENSANDBOX_DEFAULT_TIMEOUT must be positive")
		}
		return c.Autoscaler.Validate()
	default:
		return fmt.Errorf("OPENSANDBOX_MODE %q is not supported (want %s or %s)", c.Mode, ModeCombined, ModeServer)
	}
}

// checkDashboard checks the dashboard's settings: WorkOS's credentials,
// PostgreSQL for users and sessions, and where browsers come back to.
func (c Config) checkDashboard() error {
	switch {
	case c.WorkOSClientID == "" || c.WorkOSAPIKey == "":
		return errors.New("the dashboard needs both WORKOS_CLIENT_ID and WORKOS_API_KEY")
	case c.DatabaseURL == "":
		return errors.New("the dashboard needs DATABASE_URL (its users and sessions live in PostgreSQL)")
	}
	for name, raw := range map[string]string{"OPENSANDBOX_PUBLIC_URL": c.PublicURL, "WORKOS_API_URL": c.WorkOSAPIURL} {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return fmt.Errorf("the dashboard needs %s as http(s)://host[:port], got %q", name, raw)
		}
	}
	return nil
}
