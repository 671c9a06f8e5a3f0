//go:build integration

package opensandbox_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/metrics"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	opensandbox "github.com/opensandbox/opensandbox/sdks/go"
)

func TestFiles(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t, time.Minute)
	files := newSandbox(t, "busybox").Files()

	e, err := files.Write(ctx, "/work/notes/a.txt", strings.NewReader("hello files"))
	if err != nil {
		t.Fatal(err)
	}
	if e.Path != "/work/notes/a.txt" || e.Name != "a.txt" || e.Size != 11 || e.IsDir {
		t.Fatalf("write answered %+v", e)
	}
	if s, err := files.Read(ctx, "/work/notes/a.txt"); err != nil || s != "hello files" {
		t.Fatalf("read: %q, %v", s, err)
	}
	// A reader of unknown length goes chunked.
	binary := []byte{0, 1, 2, 255, '\n', 0}
	if _, err := files.Write(ctx, "/work/bin", io.MultiReader(bytes.NewReader(binary))); err != nil {
		t.Fatal(err)
	}
	if b, err := files.ReadBytes(ctx, "/work/bin"); err != nil || !bytes.Equal(b, binary) {
		t.Fatalf("read bytes: %v, %v", b, err)
	}
	if ok, err := files.Exists(ctx, "/work/notes/a.txt"); err != nil || !ok {
		t.Fatalf("exists: %v, %v", ok, err)
	}
	if ok, err := files.Exists(ctx, "/work/nothing"); err != nil || ok {
		t.Fatalf("exists (missing): %v, %v", ok, err)
	}
	st, err := files.Stat(ctx, "/work/notes")
	if err != nil || !st.IsDir || st.Name != "notes" || st.ModTime.IsZero() {
		t.Fatalf("stat: %+v, %v", st, err)
	}

	if e, err := files.MakeDir(ctx, "/work/deep/er/est"); err != nil || !e.IsDir {
		t.Fatalf("mkdir: %+v, %v", e, err)
	}
	list, err := files.List(ctx, "/work", 1)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(list))
	for _, e := range list {
		names = append(names, e.Name)
	}
	slices.Sort(names)
	if strings.Join(names, ",") != "bin,deep,notes" {
		t.Fatalf("list depth 1: %v", names)
	}
	list, err = files.List(ctx, "/work", 3)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(list, func(e opensandbox.EntryInfo) bool { return e.Path == "/work/deep/er/est" }) {
		t.Fatalf("list depth 3 lacks /work/deep/er/est: %+v", list)
	}

	if e, err := files.Rename(ctx, "/work/notes/a.txt", "/work/b.txt"); err != nil || e.Path != "/work/b.txt" {
		t.Fatalf("rename: %+v, %v", e, err)
	}
	if s, err := files.Read(ctx, "/work/b.txt"); err != nil || s != "hello files" {
		t.Fatalf("read after rename: %q, %v", s, err)
	}
	if err := files.Remove(ctx, "/work/deep"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := files.Exists(ctx, "/work/deep/er"); ok {
		t.Fatal("remove left /work/deep/er")
	}

	_, err = files.Read(ctx, "/work/notes/a.txt")
	if !errors.Is(err, opensandbox.ErrNotFound) || errors.Is(err, opensandbox.ErrSandboxGone) {
		t.Fatalf("read of a moved file: %v", err)
	}
	requireCode(t, err, 404, opensandbox.CodeFileNotFound)
}

func TestUploadDownload(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t, time.Minute)
	sbx := newSandbox(t, "busybox")
	files := sbx.Files()
	dir := t.TempDir()
	src := filepath.Join(dir, "tool.sh")
	body := []byte("#!/bin/sh\necho uploaded tool\n")
	if err := os.WriteFile(src, body, 0o755); err != nil {
		t.Fatal(err)
	}
	var last atomic.Int64
	e, err := files.Upload(ctx, src, "/opt/tool.sh", opensandbox.TransferOptions{
		OnProgress: func(done, total int64) {
			if total != int64(len(body)) {
				t.Errorf("upload total %d", total)
			}
			last.Store(done)
		}})
	if err != nil {
		t.Fatal(err)
	}
	if e.Size != int64(len(body)) || e.Mode != "0755" || last.Load() != int64(len(body)) {
		t.Fatalf("upload: %+v, last progress %d", e, last.Load())
	}
	// The mode came along: the script runs.
	if res, err := sbx.Commands().Run(ctx, "/opt/tool.sh", opensandbox.RunOptions{}); err != nil || res.Stdout != "uploaded tool\n" {
		t.Fatalf("run the uploaded script: %+v, %v", res, err)
	}

	dst := filepath.Join(dir, "back.sh")
	n, err := files.Download(ctx, "/opt/tool.sh", dst, opensandbox.TransferOptions{})
	if err != nil || n != int64(len(body)) {
		t.Fatalf("download: %d, %v", n, err)
	}
	if got, err := os.ReadFile(dst); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("downloaded %q, %v", got, err)
	}
	if _, err := files.Download(ctx, "/opt/missing", filepath.Join(dir, "missing"), opensandbox.TransferOptions{}); !errors.Is(err, opensandbox.ErrNotFound) {
		t.Fatalf("download of a missing file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failed download left a file: %v", err)
	}
}

// TestLargeTransfer moves 100 MiB each way without holding it in memory.
func TestLargeTransfer(t *testing.T) {
	t.Parallel()
	const size = 100 << 20
	ctx := testCtx(t, 2*time.Minute)
	sbx := newSandbox(t, "busybox")
	files := sbx.Files()

	peak := watchHeap(t)
	src := sha256.New()
	data := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{42}), size), src)
	var uploaded atomic.Int64
	e, err := files.WriteStream(ctx, "/tmp/big.bin", data, size, opensandbox.TransferOptions{
		OnProgress: func(done, _ int64) { uploaded.Store(done) },
	})
	if err != nil {
		t.Fatal(err)
	}
	want := hex.EncodeToString(src.Sum(nil))
	if e.Size != size || uploaded.Load() != size {
		t.Fatalf("upload: %+v, progress %d", e, uploaded.Load())
	}
	res, err := sbx.Commands().Run(ctx, "sha256sum /tmp/big.bin", opensandbox.RunOptions{})
	if err != nil || !strings.HasPrefix(res.Stdout, want) {
		t.Fatalf("sha256 in the sandbox %q (%v), want %s", res.Stdout, err, want)
	}

	dst := sha256.New()
	var downloaded, total atomic.Int64
	n, err := files.DownloadTo(ctx, "/tmp/big.bin", dst, opensandbox.TransferOptions{
		OnProgress: func(done, all int64) { downloaded.Store(done); total.Store(all) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(dst.Sum(nil)); n != size || got != want {
		t.Fatalf("downloaded %d bytes with sha256 %s, want %d and %s", n, got, size, want)
	}
	if downloaded.Load() != size || total.Load() != size {
		t.Fatalf("download progress %d of %d", downloaded.Load(), total.Load())
	}
	if p := peak(); p > 64<<20 {
		t.Fatalf("heap peaked at %d MiB during a streamed 100 MiB transfer", p>>20)
	}
}

// watchHeap samples the live heap until the test ends; the returned func
// gives the peak so far.
func watchHeap(t *testing.T) func() uint64 {
	var peak atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	go func() {
		defer close(done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(sample)
			if v := sample[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return peak.Load
}
