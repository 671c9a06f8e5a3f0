package ringbuf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"
)

func readAll(t *testing.T, r *Reader) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out []byte
	buf := make([]byte, 1000)
	for {
		n, err := r.ReadContext(ctx, buf)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("read: %v", err)
		}
	}
}

func TestScrollbackKeepsTheLastBytes(t *testing.T) {
	b := New(100)
	for i := range 1000 {
		b.Write([]byte{byte(i)})
	}
	b.Close()
	got := readAll(t, b.NewReader(true))
	if len(got) != 100 || got[0] != byte(900%256) || got[99] != byte(999%256) {
		t.Fatalf("kept %d bytes starting %d", len(got), got[0])
	}
	if b.Written() != 1000 {
		t.Fatalf("written %d", b.Written())
	}
}

func TestLiveReaderStartsAtTheEnd(t *testing.T) {
	b := New(100)
	b.Write([]byte("old"))
	r := b.NewReader(false)
	b.Write([]byte("new"))
	b.Close()
	if got := readAll(t, r); string(got) != "new" {
		t.Fatalf("got %q", got)
	}
}

// A follower sees every byte even when far more than max is written: the
// writer waits for it instead of dropping.
func TestFollowerGetsEverythingInOrder(t *testing.T) {
	b := New(64 << 10)
	r := b.NewReader(true)
	want := make([]byte, 5<<20)
	for i := range want {
		want[i] = byte(i * 7)
	}
	go func() {
		for p := want; len(p) > 0; {
			n := min(len(p), 3000)
			if _, err := b.Write(p[:n]); err != nil {
				t.Error(err)
				return
			}
			p = p[n:]
		}
		b.Close()
	}()
	if got := readAll(t, r); !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes, want %d (equal prefix: %v)", len(got), len(want), bytes.HasPrefix(want, got))
	}
	if n := len(b.blocks); n > 64<<10/blockSize+1 {
		t.Fatalf("%d blocks held after reading everything", n)
	}
}

func TestClosingAReaderReleasesTheWriter(t *testing.T) {
	b := New(10)
	r := b.NewReader(true)
	done := make(chan error, 1)
	go func() { _, err := b.Write(make([]byte, 100)); done <- err }()
	select {
	case <-done:
		t.Fatal("write did not wait for the reader")
	case <-time.After(50 * time.Millisecond):
	}
	r.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("writer still blocked after the reader closed")
	}
	if _, err := r.Read(make([]byte, 1)); !errors.Is(err, ErrDetached) {
		t.Fatalf("read after close: %v", err)
	}
}

func TestCloseReleasesABlockedWriter(t *testing.T) {
	b := New(10)
	b.NewReader(true)
	done := make(chan error, 1)
	go func() { _, err := b.Write(make([]byte, 100)); done <- err }()
	time.Sleep(20 * time.Millisecond)
	b.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("got %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("writer still blocked after Close")
	}
}

func TestReadContextHonoursCancel(t *testing.T) {
	b := New(10)
	r := b.NewReader(false)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	if _, err := r.ReadContext(ctx, make([]byte, 4)); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
}

// An observer never holds the writer: one that stops reading is dropped
// once it falls more than max behind, and learns it on its next read. A
// follower still gets every byte.
func TestStalledObserverIsDroppedNotWaitedFor(t *testing.T) {
	b := New(64)
	stalled := b.NewObserver(true)
	keeping := b.NewObserver(true)
	follower := b.NewReader(true)
	// The writer reads the observer that keeps up after each byte; the
	// follower is read here.
	var got []byte
	errc := make(chan error, 1)
	go func() {
		defer b.Close()
		buf := make([]byte, 1000)
		for i := range 1000 {
			if _, err := b.Write([]byte{byte(i)}); err != nil {
				errc <- err
				return
			}
			n, err := keeping.Read(buf)
			if err != nil {
				errc <- fmt.Errorf("observer that keeps up: %w", err)
				return
			}
			got = append(got, buf[:n]...)
		}
		errc <- nil
	}()
	if followed := readAll(t, follower); len(followed) != 1000 {
		t.Fatalf("follower got %d bytes", len(followed))
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if _, err := stalled.Read(make([]byte, 10)); !errors.Is(err, ErrLagged) {
		t.Fatalf("stalled observer read: %v, want ErrLagged", err)
	}
	if rest := readAll(t, keeping); len(got)+len(rest) != 1000 {
		t.Fatalf("observer that kept up got %d bytes", len(got)+len(rest))
	}
}

// With only a stalled observer the writer never blocks.
func TestWriteDoesNotWaitForObservers(t *testing.T) {
	b := New(64)
	r := b.NewObserver(false)
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.Write(bytes.Repeat([]byte("x"), 10_000))
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("write blocked on an observer")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := r.ReadContext(ctx, make([]byte, 10)); !errors.Is(err, ErrLagged) {
		t.Fatalf("read: %v, want ErrLagged", err)
	}
}
