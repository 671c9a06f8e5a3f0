//go:build integration

package opensandbox_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	opensandbox "github.com/opensandbox/opensandbox/sdks/go"
)

// These tests run against a real server: `make test` in sdks/go, or
// scripts/with-server.sh make -C sdks/go test from the repository root.
func TestMain(m *testing.M) {
	if os.Getenv("OPENSANDBOX_API_URL") == "" || os.Getenv("OPENSANDBOX_API_KEY") == "" {
		fmt.Fprintln(os.Stderr, "integration tests need OPENSANDBOX_API_URL and OPENSANDBOX_API_KEY "+
			"(run them through scripts/with-server.sh make -C sdks/go test)")
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// testCtx is a context that ends with the test or after d.
func testCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// newSandbox creates a sandbox that is killed when the test ends.
func newSandbox(t *testing.T, template string) *opensandbox.Sandbox {
	t.Helper()
	ctx := testCtx(t, time.Minute)
	sbx, err := opensandbox.NewClient().Create(ctx, opensandbox.CreateOptions{Template: template, Timeout: 3 * time.Minute})
	if err != nil {
		t.Fatalf("create %s sandbox: %v", template, err)
	}
	t.Cleanup(func() { killQuietly(t, sbx) })
	return sbx
}

// killQuietly kills a sandbox that may already be gone.
func killQuietly(t *testing.T, sbx *opensandbox.Sandbox) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := sbx.Kill(ctx); err != nil {
		t.Errorf("kill %s: %v", sbx.ID(), err)
	}
}

// eventually polls cond until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// syncBuffer collects output written from another goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor waits until the output after offset from contains want.
func (b *syncBuffer) waitFor(t *testing.T, from int, want string) {
	t.Helper()
	eventually(t, 15*time.Second, fmt.Sprintf("%q in the output", want), func() bool {
		s := b.String()
		return len(s) >= from && strings.Contains(s[from:], want)
	})
}

func (b *syncBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

// requireCode checks an error's status and code.
func requireCode(t *testing.T, err error, status int, code string) {
	t.Helper()
	var e *opensandbox.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *opensandbox.Error", err, err)
	}
	if e.Status != status || e.Code != code {
		t.Fatalf("error %v: status %d code %q, want %d %q", err, e.Status, e.Code, status, code)
	}
}
