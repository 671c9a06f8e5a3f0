// Package app wires and runs a worker: the sandbox manager on Podman, the
// data-path HTTP API behind sandbox tokens, the SandboxWorker gRPC API for the
// control plane, heartbeats and the event publisher over NATS.
package app

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/opensandbox/opensandbox/services/shared/auth"
	"github.com/opensandbox/opensandbox/services/shared/config"
	"github.com/opensandbox/opensandbox/services/shared/grpcx"
	"github.com/opensandbox/opensandbox/services/shared/natsx"
	"github.com/opensandbox/opensandbox/services/worker/consulreg"
	"github.com/opensandbox/opensandbox/services/worker/heartbeat"
	"github.com/opensandbox/opensandbox/services/worker/publisher"
	"github.com/opensandbox/opensandbox/services/worker/sandbox"
)

// Registries a worker can announce itself in.
const (
	RegistryNATS   = "nats"
	RegistryConsul = "consul"
)

// Config is a worker's configuration, read from the environment.
type Config struct {
	HTTPListen string // OPENSANDBOX_HOST:OPENSANDBOX_PORT
	GRPCListen string // OPENSANDBOX_HOST:OPENSANDBOX_GRPC_PORT
	// Advertised in heartbeats: the connectURL SDKs use and the address the
	// control plane dials.
	HTTPURL  string // OPENSANDBOX_WORKER_URL
	GRPCAddr string // OPENSANDBOX_WORKER_GRPC_ADDR
	// DataTLSCert and DataTLSKey serve the data path over HTTPS from PEM
	// files another process renews (docs/deploy.md: ACME on each host).
	DataTLSCert string // OPENSANDBOX_TLS_CERT
	DataTLSKey  string // OPENSANDBOX_TLS_KEY

	NATSURL       string
	JWTSecret     string // verifies sandbox tokens (the control plane signs them)
	ClusterSecret string // the control plane's credential on gRPC (and /metrics without MetricsToken)
	// MetricsToken, when set, is the only credential of GET /metrics, so
	// Prometheus never holds the cluster secret.
	MetricsToken      string
	HeartbeatInterval time.Duration
	PublishEvents     bool
	// EventsMaxBytes bounds SANDBOX_EVENTS when this worker creates it: a
	// work queue that refuses events when full (they wait in SQLite).
	EventsMaxBytes int64
	// EventsPerMessage bounds the events of a sandbox that share one
	// JetStream message (1: every event its own message, its id the
	// Nats-Msg-Id).
	EventsPerMessage int
	// GRPCTLS serves gRPC over TLS with this certificate; with a CA the
	// control plane must present a certificate signed by it (mutual TLS).
	GRPCTLS grpcx.TLSFiles

	// Registry is where the control plane learns of this worker: "nats"
	// (heartbeats only, the default) or "consul" (the worker also registers
	// with its local Consul agent, found by CONSUL_HTTP_ADDR).
	Registry  string
	ConsulTTL time.Duration
	// Consul is the client of the local agent (set by Main with "consul").
	Consul *consulapi.Client

	LogLevel   string
	PodmanURI  string
	OCIRuntime string
	MaxUpload  int64
	Version    string
	Sandbox    sandbox.Config
}

// LoadConfig reads the environment and validates the result.
func LoadConfig() (Config, error) {
	e := &config.Env{}
	host := e.String("OPENSANDBOX_HOST", "127.0.0.1")
	port := e.String("OPENSANDBOX_PORT", "8081")
	grpcPort := e.String("OPENSANDBOX_GRPC_PORT", "9090")
	advertise := host
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		advertise, _ = os.Hostname()
	}
	tlsCert, tlsKey := e.String("OPENSANDBOX_TLS_CERT", ""), e.String("OPENSANDBOX_TLS_KEY", "")
	scheme := "http://"
	if tlsCert != "" {
		scheme = "https://"
	}
	c := Config{
		HTTPListen:        net.JoinHostPort(host, port),
		GRPCListen:        net.JoinHostPort(host, grpcPort),
		DataTLSCert:       tlsCert,
		DataTLSKey:        tlsKey,
		HTTPURL:           e.String("OPENSANDBOX_WORKER_URL", scheme+net.JoinHostPort(advertise, port)),
		GRPCAddr:          e.String("OPENSANDBOX_WORKER_GRPC_ADDR", net.JoinHostPort(advertise, grpcPort)),
		NATSURL:           e.String("NATS_URL", ""),
		JWTSecret:         e.String("OPENSANDBOX_JWT_SECRET", ""),
		ClusterSecret:     e.String("OPENSANDBOX_WORKER_SECRET", ""),
		MetricsToken:      e.String("OPENSANDBOX_METRICS_TOKEN", ""),
		HeartbeatInterval: e.Duration("OPENSANDBOX_HEARTBEAT_INTERVAL", heartbeat.DefaultInterval),
		PublishEvents:     e.Bool("OPENSANDBOX_PUBLISH_EVENTS", true),
		EventsMaxBytes:    e.Int64("OPENSANDBOX_EVENTS_MAX_BYTES", natsx.DefaultEventsMaxBytes),
		EventsPerMessage:  e.Int("OPENSANDBOX_EVENTS_PER_MESSAGE", publisher.DefaultEventsPerMessage),
		GRPCTLS: grpcx.TLSFiles{
			Cert: e.String("OPENSANDBOX_GRPC_TLS_CERT", ""),
			Key:  e.String("OPENSANDBOX_GRPC_TLS_KEY", ""),
			CA:   e.String("OPENSANDBOX_GRPC_TLS_CA", ""),
		},
		Registry:   e.String("OPENSANDBOX_REGISTRY", RegistryNATS),
		ConsulTTL:  e.Duration("OPENSANDBOX_CONSUL_TTL", consulreg.DefaultTTL),
		LogLevel:   e.String("OPENSANDBOX_LOG_LEVEL", "info"),
		PodmanURI:  e.String("OPENSANDBOX_PODMAN_URI", "unix:///run/opensandbox/podman.sock"),
		OCIRuntime: e.String("OPENSANDBOX_OCI_RUNTIME", ""),
		MaxUpload:  e.Int64("OPENSANDBOX_MAX_UPLOAD_BYTES", 10<<30),
		Version:    e.String("OPENSANDBOX_VERSION", "dev"),
		Sandbox:    sandbox.ConfigFromEnv(e),
	}
	if os.Getenv("OPENSANDBOX_WORKER_ID") == "" {
		// "local" is the combined server's id; a worker on the same Podman
		// must not restore (or remove) the combined server's sandboxes.
		h, _ := os.Hostname()
		c.Sandbox.WorkerID = "worker-" + h + "-" + port
	}
	if err := e.Err(); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// Validate checks the configuration.
func (c Config) Validate() error {
	switch {
	case c.HTTPListen == "" || c.GRPCListen == "":
		return errors.New("listen addresses are required")
	case c.HTTPURL == "" || c.GRPCAddr == "":
		return errors.New("OPENSANDBOX_WORKER_URL and OPENSANDBOX_WORKER_GRPC_ADDR are required")
	case c.NATSURL == "":
		return errors.New("NATS_URL is required (make infra-up writes it to .env.local)")
	case len(c.JWTSecret) < auth.MinSecretLen:
		return fmt.Errorf("OPENSANDBOX_JWT_SECRET must be at least %d bytes (the control plane's)", auth.MinSecretLen)
	case len(c.ClusterSecret) < auth.MinSecretLen:
		return fmt.Errorf("OPENSANDBOX_WORKER_SECRET must be at least %d bytes (the control plane's)", auth.MinSecretLen)
	case c.MetricsToken != "" && len(c.MetricsToken) < auth.MinSecretLen:
		return fmt.Errorf("OPENSANDBOX_METRICS_TOKEN must be at least %d bytes", auth.MinSecretLen)
	case c.HeartbeatInterval <= 0:
		return errors.New("OPENSANDBOX_HEARTBEAT_INTERVAL must be positive")
	case c.MaxUpload <= 0:
		return errors.New("OPENSANDBOX_MAX_UPLOAD_BYTES must be positive")
	case c.EventsMaxBytes <= 0:
		return errors.New("OPENSANDBOX_EVENTS_MAX_BYTES must be positive")
	case c.EventsPerMessage < 1 || c.EventsPerMessage > 1000:
		return errors.New("OPENSANDBOX_EVENTS_PER_MESSAGE must be between 1 and 1000")
	case (c.DataTLSCert == "") != (c.DataTLSKey == ""):
		return errors.New("HTTPS on the data path needs both OPENSANDBOX_TLS_CERT and OPENSANDBOX_TLS_KEY")
	case c.DataTLSCert != "" && !strings.HasPrefix(c.HTTPURL, "https://"):
		return errors.New("OPENSANDBOX_WORKER_URL must be https:// when the data path serves TLS")
	case c.Registry != RegistryNATS && c.Registry != RegistryConsul:
		return fmt.Errorf("OPENSANDBOX_REGISTRY %q: want %s or %s", c.Registry, RegistryNATS, RegistryConsul)
	case c.ConsulTTL < time.Second:
		return errors.New("OPENSANDBOX_CONSUL_TTL must be at least 1s")
	case c.GRPCTLS.Enabled() && (c.GRPCTLS.Cert == "" || c.GRPCTLS.Key == ""):
		return errors.New("gRPC TLS needs OPENSANDBOX_GRPC_TLS_CERT and OPENSANDBOX_GRPC_TLS_KEY")
	}
	if _, err := strconv.Atoi(portOf(c.GRPCListen)); err != nil {
		return fmt.Errorf("OPENSANDBOX_GRPC_PORT: %w", err)
	}
	return c.Sandbox.Validate()
}

func portOf(hostport string) string {
	_, p, _ := net.SplitHostPort(hostport)
	return p
}
