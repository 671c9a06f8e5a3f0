package grpcx

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/proto/workerv1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// writeCert signs a certificate with parent (self-signed when nil) and
// writes cert and key PEM files into dir.
func writeCert(t *testing.T, dir, name string, tmpl *x509.Certificate, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(filepath.Join(dir, name+".pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(filepath.Join(dir, name+"-key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	return cert, key
}

func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	ca, caKey := writeCert(t, dir, "ca", &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "osb ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}, nil, nil)
	writeCert(t, dir, "worker", &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "worker"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, ca, caKey)
	writeCert(t, dir, "cp", &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "control plane"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, ca, caKey)
	f := func(name string) string { return filepath.Join(dir, name) }

	creds, err := ServerCreds(TLSFiles{Cert: f("worker.pem"), Key: f("worker-key.pem"), CA: f("ca.pem")})
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(ServerOptions(NewSecretAuth("cluster-secret-0123", nil), nil, creds)...)
	workerv1.RegisterSandboxWorkerServer(srv, fakeWorker{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Stop()

	call := func(secret string, files *TLSFiles) error {
		o := DialOptions{Secret: secret}
		if files != nil {
			tr, err := ClientCreds(*files)
			if err != nil {
				t.Fatal(err)
			}
			o.Transport = tr
		}
		cc, err := NewClient(ln.Addr().String(), o)
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = workerv1.NewSandboxWorkerClient(cc).GetSandbox(ctx, &workerv1.GetSandboxRequest{SandboxId: "ok"})
		return err
	}
	mtls := &TLSFiles{Cert: f("cp.pem"), Key: f("cp-key.pem"), CA: f("ca.pem")}
	if err := call("cluster-secret-0123", mtls); err != nil {
		t.Fatalf("mutual TLS call: %v", err)
	}
	if err := call("wrong-secret-0123456", mtls); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("mTLS with a wrong secret: %v", err)
	}
	if err := call("cluster-secret-0123", &TLSFiles{CA: f("ca.pem")}); err == nil {
		t.Fatal("a client without a certificate got through")
	}
	if err := call("cluster-secret-0123", nil); err == nil {
		t.Fatal("a plaintext client got through")
	}
	if _, err := ServerCreds(TLSFiles{CA: f("ca.pem")}); err == nil {
		t.Fatal("server credentials without a certificate")
	}
}
