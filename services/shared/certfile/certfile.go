// Package certfile serves a TLS certificate from PEM files that another
// process renews (an ACME client, a secrets template): every handshake sees
// the files' current pair, so a renewal needs no restart.
package certfile

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"time"
)

// Pair is a certificate and key on disk, reloaded when either file changes.
type Pair struct {
	cert, key string

	mu      sync.Mutex
	current *tls.Certificate
	stamp   string // size and mtime of both files when current was loaded
}

// Load reads the pair once, so a bad path or a mismatched key fails at
// start-up rather than at the first handshake.
func Load(certPath, keyPath string) (*Pair, error) {
	p := &Pair{cert: certPath, key: keyPath}
	if _, err := p.get(); err != nil {
		return nil, err
	}
	return p, nil
}

func stamp(paths ...string) (string, error) {
	s := ""
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return "", err
		}
		s += fmt.Sprintf("%d/%d;", fi.Size(), fi.ModTime().UnixNano())
	}
	return s, nil
}

// get returns the current pair, reloading it when the files changed. A pair
// that fails to load (a renewal caught half-written) keeps the previous one.
func (p *Pair) get() (*tls.Certificate, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st, err := stamp(p.cert, p.key)
	if err == nil && st == p.stamp && p.current != nil {
		return p.current, nil
	}
	pair, lerr := tls.LoadX509KeyPair(p.cert, p.key)
	if lerr != nil {
		if p.current != nil {
			return p.current, nil
		}
		return nil, fmt.Errorf("certificate %s: %w", p.cert, lerr)
	}
	p.current, p.stamp = &pair, st
	return p.current, nil
}

// GetCertificate is tls.Config.GetCertificate for servers.
func (p *Pair) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) { return p.get() }

// GetClientCertificate is tls.Config.GetClientCertificate for clients
// presenting the pair (mutual TLS).
func (p *Pair) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return p.get()
}

// Expiry returns when the loaded certificate ends (for metrics and logs).
func (p *Pair) Expiry() time.Time {
	c, err := p.get()
	if err != nil || c.Leaf == nil {
		return time.Time{}
	}
	return c.Leaf.NotAfter
}
