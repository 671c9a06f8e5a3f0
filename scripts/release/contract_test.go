package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

var testCreds = credentials.NewStaticCredentialsProvider("AKIDRELEASETEST", "release-test-secret", "")

// authHeader is SigV4's Authorization header.
var authHeader = regexp.MustCompile(`^AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([a-z0-9-]+)/([a-z0-9]+)/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$`)

// checkSigV4 verifies a request's Signature Version 4 signature with the
// test credentials, as AWS does: the scope names the region and service,
// and the signature over the signed headers and the payload hash matches.
func checkSigV4(r *http.Request, region, service, payloadHash string) error {
	m := authHeader.FindStringSubmatch(r.Header.Get("Authorization"))
	if m == nil {
		return fmt.Errorf("authorization header %q is not SigV4", r.Header.Get("Authorization"))
	}
	if m[1] != "AKIDRELEASETEST" || m[3] != region || m[4] != service {
		return fmt.Errorf("credential scope %s/%s/%s/%s", m[1], m[2], m[3], m[4])
	}
	when, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return fmt.Errorf("X-Amz-Date: %w", err)
	}
	copyReq, _ := http.NewRequest(r.Method, "http://"+r.Host+r.URL.RequestURI(), nil)
	for _, h := range strings.Split(m[5], ";") {
		if h == "host" {
			continue
		}
		copyReq.Header[http.CanonicalHeaderKey(h)] = r.Header.Values(h)
	}
	copyReq.ContentLength = r.ContentLength
	creds, _ := testCreds.Retrieve(context.Background())
	if err := v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = service == "s3" }).SignHTTP(context.Background(), creds, copyReq, payloadHash, service, region, when); err != nil {
		return err
	}
	if got := authHeader.FindStringSubmatch(copyReq.Header.Get("Authorization")); got == nil || got[6] != m[6] {
		return fmt.Errorf("signature does not verify (signed headers %s)", m[5])
	}
	return nil
}

// s3Server speaks the part of the S3 REST API an upload uses: PutObject
// (PUT /<bucket>/<key>, path-style) with SigV4, x-amz-content-sha256 and
// x-amz-checksum-sha256 checked as S3 documents them, and S3's XML errors.
type s3Server struct {
	region, bucket string
	mu             sync.Mutex
	objects        map[string][]byte
	headers        map[string]http.Header
}

func s3Error(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>%s</Message><RequestId>test</RequestId></Error>`, code, msg)
}

func (s *s3Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPut {
		s3Error(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "only PutObject here")
		return
	}
	bucket, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if bucket != s.bucket {
		s3Error(w, http.StatusNotFound, "NoSuchBucket", "The specified bucket does not exist")
		return
	}
	if r.Header.Get("Content-Encoding") == "aws-chunked" {
		s3Error(w, http.StatusNotImplemented, "NotImplemented", "this contract server takes plain bodies")
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil || int64(len(body)) != r.ContentLength {
		s3Error(w, http.StatusBadRequest, "IncompleteBody", "body shorter than Content-Length")
		return
	}
	sum := sha256.Sum256(body)
	payload := r.Header.Get("X-Amz-Content-Sha256")
	if payload != "UNSIGNED-PAYLOAD" && payload != hex.EncodeToString(sum[:]) {
		s3Error(w, http.StatusBadRequest, "XAmzContentSHA256Mismatch", "x-amz-content-sha256 does not match the body")
		return
	}
	if err := checkSigV4(r, s.region, "s3", payload); err != nil {
		s3Error(w, http.StatusForbidden, "SignatureDoesNotMatch", err.Error())
		return
	}
	if want := base64.StdEncoding.EncodeToString(sum[:]); r.Header.Get("X-Amz-Checksum-Sha256") != want {
		s3Error(w, http.StatusBadRequest, "BadDigest", "The SHA256 you specified did not match the calculated checksum")
		return
	}
	s.mu.Lock()
	s.objects[key], s.headers[key] = body, r.Header.Clone()
	s.mu.Unlock()
	w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:16])+`"`)
	w.Header().Set("X-Amz-Checksum-Sha256", r.Header.Get("X-Amz-Checksum-Sha256"))
	w.WriteHeader(http.StatusOK)
}

func s3Client(url, region string) *s3.Client {
	return s3.New(s3.Options{Region: region, BaseEndpoint: aws.String(url), UsePathStyle: true, Credentials: testCreds})
}

// TestUploadS3ContractTest uploads a built release with the real AWS SDK to
// a server speaking S3's documented PutObject API.
func TestUploadS3ContractTest(t *testing.T) {
	rel := buildOnce(t)
	srv := &s3Server{region: "eu-west-1", bucket: "osb-euw1-releases-123456789012", objects: map[string][]byte{}, headers: map[string]http.Header{}}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	norel := *rel
	norel.Images = nil // images: TestUploadPushesImagesToECR
	up := &Uploader{S3: s3Client(ts.URL, "eu-west-1")}
	res, err := up.Upload(context.Background(), quiet(), &norel, Target{Region: "eu-west-1", Bucket: srv.bucket})
	if err != nil {
		t.Fatal(err)
	}
	tarKey := "releases/v0.0.0-test/" + TarballName("v0.0.0-test")
	want, _ := os.ReadFile(rel.Tarball)
	if got := srv.objects[tarKey]; string(got) != string(want) {
		t.Errorf("stored %d bytes under %s, want the %d-byte tarball (keys %v)", len(got), tarKey, len(want), res.Keys)
	}
	if got := string(srv.objects[tarKey+".sha256"]); !strings.HasPrefix(got, rel.SHA256) {
		t.Errorf("stored checksum file %q", got)
	}
	if ct := srv.headers[tarKey].Get("Content-Type"); ct != "application/gzip" {
		t.Errorf("tarball stored as %q", ct)
	}

	// The bucket of another region is not there: the error says so.
	_, err = up.Upload(context.Background(), quiet(), &norel, Target{Region: "eu-west-1", Bucket: "osb-use1-releases-123456789012"})
	if err == nil || !strings.Contains(err.Error(), "NoSuchBucket") {
		t.Errorf("upload to a missing bucket: %v", err)
	}
	// A client signing for the wrong region is refused, as S3 does.
	wrong := &Uploader{S3: s3Client(ts.URL, "us-east-1")}
	if _, err := wrong.Upload(context.Background(), quiet(), &norel, Target{Region: "us-east-1", Bucket: srv.bucket}); err == nil || !strings.Contains(err.Error(), "SignatureDoesNotMatch") {
		t.Errorf("upload signed for another region: %v", err)
	}
}

// ecrServer speaks ECR's GetAuthorizationToken (AWS JSON 1.1 protocol,
// X-Amz-Target AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken).
type ecrServer struct {
	region, password string
	calls            int
}

func (s *ecrServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	body, _ := io.ReadAll(r.Body)
	sum := sha256.Sum256(body)
	if r.Method != http.MethodPost || r.Header.Get("X-Amz-Target") != "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken" {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"__type":"UnknownOperationException"}`)
		return
	}
	if err := checkSigV4(r, s.region, "ecr", hex.EncodeToString(sum[:])); err != nil {
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintf(w, `{"__type":"InvalidSignatureException","message":%q}`, err.Error())
		return
	}
	s.calls++
	json.NewEncoder(w).Encode(map[string]any{"authorizationData": []map[string]any{{
		"authorizationToken": base64.StdEncoding.EncodeToString([]byte("AWS:" + s.password)),
		"expiresAt":          float64(time.Now().Add(12 * time.Hour).Unix()),
		"proxyEndpoint":      "https://123456789012.dkr.ecr." + s.region + ".amazonaws.com",
	}}})
}

// startRegistry runs Debian's docker-registry (a real Distribution
// registry, installed by scripts/test-deps.sh) on a free port.
func startRegistry(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		t.Fatal("docker-registry not installed (scripts/test-deps.sh installs it)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	conf := filepath.Join(dir, "config.yml")
	os.WriteFile(conf, []byte(fmt.Sprintf("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n", dir, addr)), 0o600)
	cmd := exec.Command(bin, "serve", conf)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatal("registry did not listen")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestUploadPushesImagesToECR gets registry credentials from a server
// speaking ECR's documented API and pushes the syncer image to a real
// registry, where it is then found by its digest.
func TestUploadPushesImagesToECR(t *testing.T) {
	rel := buildOnce(t)
	s3srv := &s3Server{region: "us-east-1", bucket: "osb-use1-releases", objects: map[string][]byte{}, headers: map[string]http.Header{}}
	s3ts := httptest.NewServer(s3srv)
	defer s3ts.Close()
	ecrSrv := &ecrServer{region: "us-east-1", password: "ecr-token"}
	ecrTS := httptest.NewServer(ecrSrv)
	defer ecrTS.Close()
	reg := startRegistry(t)

	up := &Uploader{S3: s3Client(s3ts.URL, "us-east-1"),
		ECR: ecr.New(ecr.Options{Region: "us-east-1", BaseEndpoint: aws.String(ecrTS.URL), Credentials: testCreds})}
	res, err := up.Upload(context.Background(), quiet(), rel, Target{Region: "us-east-1", Bucket: s3srv.bucket, Registry: reg + "/osb-use1"})
	if err != nil {
		t.Fatal(err)
	}
	if ecrSrv.calls != 1 {
		t.Errorf("ECR GetAuthorizationToken called %d times", ecrSrv.calls)
	}
	ref := res.Images["syncer"]
	if !strings.HasPrefix(ref, reg+"/osb-use1/syncer@sha256:") {
		t.Fatalf("pushed syncer as %q", ref)
	}
	d, err := name.NewDigest(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(d)
	if err != nil {
		t.Fatalf("pushed image not in the registry: %v", err)
	}
	cfg, _ := img.ConfigFile()
	if cfg.Config.User != imageUser+":"+imageUser {
		t.Errorf("pushed image runs as %q", cfg.Config.User)
	}
	tag, _ := name.NewTag(reg + "/osb-use1/syncer:v0.0.0-test")
	if _, err := remote.Head(tag); err != nil {
		t.Errorf("version tag not pushed: %v", err)
	}
}
