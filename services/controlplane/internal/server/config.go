// Package server wires and runs the API server.
package server

import (
	"fmt"
	"net"

	"github.com/opensandbox/opensandbox/services/shared/config"
	"github.com/opensandbox/opensandbox/services/worker/sandbox"
)

// Config is the server's configuration, read from OPENSANDBOX_* variables.
type Config struct {
	Mode       string // combined
	Addr       string
	APIKey     string
	LogLevel   string
	PodmanURI  string
	OCIRuntime string
	MaxUpload  int64
	Sandbox    sandbox.Config
}

// LoadConfig reads the environment and validates the result.
func LoadConfig() (Config, error) {
	e := &config.Env{}
	c := Config{
		Mode:       e.String("OPENSANDBOX_MODE", "combined"),
		Addr:       net.JoinHostPort(e.String("OPENSANDBOX_HOST", "127.0.0.1"), e.String("OPENSANDBOX_PORT", "8080")),
		APIKey:     e.String("OPENSANDBOX_API_KEY", ""),
		LogLevel:   e.String("OPENSANDBOX_LOG_LEVEL", "info"),
		PodmanURI:  e.String("OPENSANDBOX_PODMAN_URI", "unix:///run/opensandbox/podman.sock"),
		OCIRuntime: e.String("OPENSANDBOX_OCI_RUNTIME", ""),
		MaxUpload:  e.Int64("OPENSANDBOX_MAX_UPLOAD_BYTES", 10<<30),
		Sandbox:    sandbox.ConfigFromEnv(e),
	}
	if err := e.Err(); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.Mode != "combined" {
		return fmt.Errorf("OPENSANDBOX_MODE %q is not supported (want combined)", c.Mode)
	}
	if c.MaxUpload <= 0 {
		return fmt.Errorf("OPENSANDBOX_MAX_UPLOAD_BYTES must be positive")
	}
	return c.Sandbox.Validate()
}
