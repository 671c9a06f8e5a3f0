package certfile_test

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/certfile"
	"github.com/opensandbox/opensandbox/services/shared/certfile/certtest"
)

// handshake connects to addr trusting ca and returns the serial of the
// certificate the server presented.
func handshake(t *testing.T, addr string, ca *certtest.CA) int64 {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool, ServerName: "worker.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// TestPairFollowsRenewals serves a pair, renews it on disk and sees the next
// handshake present the new certificate; a renewal caught half-written keeps
// the last good one.
func TestPairFollowsRenewals(t *testing.T) {
	ca := certtest.NewCA(t)
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := ca.Issue(t, cert, key, "worker.example.test")
	pair, err := certfile.Load(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: pair.GetCertificate})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	if got := handshake(t, ln.Addr().String(), ca); got != first {
		t.Fatalf("served serial %d, want %d", got, first)
	}
	// mtime granularity: make sure the renewal looks different.
	time.Sleep(10 * time.Millisecond)
	second := ca.Issue(t, cert, key, "worker.example.test")
	if got := handshake(t, ln.Addr().String(), ca); got != second {
		t.Fatalf("after renewal served serial %d, want %d", got, second)
	}
	if err := os.WriteFile(cert, []byte("-----BEGIN CERTIFICATE-----\nhalf"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := handshake(t, ln.Addr().String(), ca); got != second {
		t.Fatalf("with a broken file served serial %d, want the last good %d", got, second)
	}
	if pair.Expiry().IsZero() {
		t.Error("no expiry for a loaded certificate")
	}
}

func TestLoadRefusesAMismatchedKey(t *testing.T) {
	ca := certtest.NewCA(t)
	dir := t.TempDir()
	ca.Issue(t, filepath.Join(dir, "a.pem"), filepath.Join(dir, "a.key"), "a.example.test")
	ca.Issue(t, filepath.Join(dir, "b.pem"), filepath.Join(dir, "b.key"), "b.example.test")
	if _, err := certfile.Load(filepath.Join(dir, "a.pem"), filepath.Join(dir, "b.key")); err == nil {
		t.Fatal("a certificate with another certificate's key loaded")
	}
	if _, err := certfile.Load(filepath.Join(dir, "nope.pem"), filepath.Join(dir, "a.key")); err == nil {
		t.Fatal("a missing certificate loaded")
	}
}
