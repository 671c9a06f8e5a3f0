package ringbuf

import (
	"bytes"
	"context"
	"errors"
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
