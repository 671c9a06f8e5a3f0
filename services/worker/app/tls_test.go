package app

import (
	"crypto/tls"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/certfile/certtest"
)

// TestDataPathServesHTTPS runs the worker's data-path app on ListenData with
// a certificate: /health answers over HTTPS to a client trusting the CA,
// plain HTTP on the same port gets no answer, and a certificate renewed on
// disk is served to the next connection without a restart.
func TestDataPathServesHTTPS(t *testing.T) {
	ca := certtest.NewCA(t)
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := ca.Issue(t, cert, key, "i-0abc.w.eu-west-1.example.test", "127.0.0.1")
	ln, err := ListenData(Config{HTTPListen: "127.0.0.1:0", DataTLSCert: cert, DataTLSKey: key})
	if err != nil {
		t.Fatal(err)
	}
	w := testWorker(t, "")
	go w.HTTP().Listener(ln)
	t.Cleanup(func() { w.HTTP().Shutdown() })
	url := "https://" + ln.Addr().String() + "/health"

	get := func() (int64, string) {
		t.Helper()
		// A fresh transport per call: each request is a new handshake.
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}}}
		resp, err := c.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.TLS.PeerCertificates[0].SerialNumber.Int64(), string(b)
	}
	if serial, body := get(); serial != first || !strings.Contains(body, `"status":"ok"`) {
		t.Fatalf("serial %d body %s, want serial %d and status ok", serial, body, first)
	}
	plain := &http.Client{Timeout: 5 * time.Second}
	if resp, err := plain.Get("http://" + ln.Addr().String() + "/health"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("the TLS port answered plain HTTP with 200")
		}
	}
	time.Sleep(10 * time.Millisecond) // a different mtime for the renewal
	second := ca.Issue(t, cert, key, "i-0abc.w.eu-west-1.example.test", "127.0.0.1")
	if serial, _ := get(); serial != second {
		t.Fatalf("after renewal served serial %d, want %d", serial, second)
	}
}

func TestDataTLSConfigIsValidated(t *testing.T) {
	t.Setenv("NATS_URL", "nats://127.0.0.1:4222")
	t.Setenv("OPENSANDBOX_JWT_SECRET", "jwt-secret-0123456789-0123456789")
	t.Setenv("OPENSANDBOX_WORKER_SECRET", "cluster-secret-0123456789-01234567")
	t.Setenv("OPENSANDBOX_TLS_CERT", "/nope/cert.pem")
	if _, err := LoadConfig(); err == nil || !strings.Contains(err.Error(), "OPENSANDBOX_TLS_KEY") {
		t.Errorf("a certificate without its key: %v", err)
	}
	t.Setenv("OPENSANDBOX_TLS_KEY", "/nope/key.pem")
	t.Setenv("OPENSANDBOX_WORKER_URL", "http://worker.example.test:8081")
	if _, err := LoadConfig(); err == nil || !strings.Contains(err.Error(), "https://") {
		t.Errorf("TLS with an http:// connectURL: %v", err)
	}
	t.Setenv("OPENSANDBOX_WORKER_URL", "")
	cfg, err := LoadConfig()
	if err != nil {
		t.Fatalf("TLS with the default connectURL: %v", err)
	}
	if !strings.HasPrefix(cfg.HTTPURL, "https://") {
		t.Errorf("default connectURL %q with TLS on is not https", cfg.HTTPURL)
	}
	if _, err := ListenData(cfg); err == nil {
		t.Error("ListenData with missing certificate files succeeded")
	}
}
