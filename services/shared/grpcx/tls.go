package grpcx

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/opensandbox/opensandbox/services/shared/certfile"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// TLSFiles names PEM files for the control plane <-> worker link. With a CA,
// the other side's certificate must be signed by it: a worker given a CA
// requires client certificates (mutual TLS); the control plane given a CA
// verifies the workers' certificates against it.
type TLSFiles struct {
	Cert string
	Key  string
	CA   string
}

// Enabled reports whether any file is set.
func (f TLSFiles) Enabled() bool { return f.Cert != "" || f.Key != "" || f.CA != "" }

func (f TLSFiles) load() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS13}
	if (f.Cert == "") != (f.Key == "") {
		return nil, errors.New("grpc tls: a certificate needs its key and the other way round")
	}
	if f.Cert != "" {
		// Reloaded on every handshake when the files change, so a renewed
		// certificate (ACME on the workers, a template on the control plane)
		// takes effect without a restart.
		pair, err := certfile.Load(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("grpc tls: %w", err)
		}
		cfg.GetCertificate, cfg.GetClientCertificate = pair.GetCertificate, pair.GetClientCertificate
	}
	if f.CA != "" {
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			return nil, fmt.Errorf("grpc tls: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("grpc tls: no certificate in %s", f.CA)
		}
		cfg.RootCAs, cfg.ClientCAs = pool, pool
	}
	return cfg, nil
}

// ServerCreds returns a worker's TLS credentials: its certificate, and, with
// a CA, client certificates required and verified (mutual TLS).
func ServerCreds(f TLSFiles) (grpc.ServerOption, error) {
	cfg, err := f.load()
	if err != nil {
		return nil, err
	}
	if cfg.GetCertificate == nil {
		return nil, errors.New("grpc tls: a worker needs a certificate and key")
	}
	if cfg.ClientCAs != nil {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	cfg.RootCAs, cfg.GetClientCertificate = nil, nil
	return grpc.Creds(credentials.NewTLS(cfg)), nil
}

// ClientCreds returns the control plane's TLS credentials: workers verified
// against the CA (the system roots without one) and, with a certificate,
// presented for mutual TLS.
func ClientCreds(f TLSFiles) (grpc.DialOption, error) {
	cfg, err := f.load()
	if err != nil {
		return nil, err
	}
	cfg.ClientCAs, cfg.GetCertificate = nil, nil
	return grpc.WithTransportCredentials(credentials.NewTLS(cfg)), nil
}
