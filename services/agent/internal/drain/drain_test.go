package drain

import (
	"bytes"
	"os"
	"testing"
	"time"
)

func closedChan() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// A reader that runs only after the process exited and after the grace has
// passed (a starved goroutine) still gets every byte that is in the pipe,
// although a descendant keeps the pipe open.
func TestLateReaderGetsWhatThePipeHolds(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()                                        // a descendant holding the write end: no end of file
	want := bytes.Repeat([]byte("0123456789abcdef"), 3000) // 48 KB, fits the pipe
	if _, err := w.Write(want); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	// The exit happened long ago and the grace is over before the first read.
	if err := Copy(&got, r, closedChan(), Options{Grace: time.Nanosecond}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("read %d of %d bytes", got.Len(), len(want))
	}
}

// Output written while the process runs and then closed arrives whole.
func TestCopyToEndOfFile(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	want := bytes.Repeat([]byte("x"), 1<<20) // more than a pipe holds
	go func() { w.Write(want); w.Close() }()
	var got bytes.Buffer
	if err := Copy(&got, r, make(chan struct{}), Options{Grace: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if got.Len() != len(want) {
		t.Fatalf("read %d of %d bytes", got.Len(), len(want))
	}
}

// A descendant that keeps printing after the exit does not hold the copy:
// it ends after MaxAfterExit bytes.
func TestEndlessDescendantIsBounded(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	stop := make(chan struct{})
	go func() {
		chunk := make([]byte, 4096)
		for {
			select {
			case <-stop:
				w.Close()
				return
			default:
				w.Write(chunk)
			}
		}
	}()
	defer close(stop)
	var got bytes.Buffer
	const limit = 256 << 10
	done := make(chan error, 1)
	go func() { done <- Copy(&got, r, closedChan(), Options{Grace: time.Second, MaxAfterExit: limit}) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("copy did not end while a descendant kept printing")
	}
	if got.Len() < limit {
		t.Fatalf("stopped after %d bytes, before the bound of %d", got.Len(), limit)
	}
}

// A quiet pipe held open by a descendant ends the copy after the grace.
func TestQuietDescendantEndsAfterGrace(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	w.Write([]byte("last words\n"))
	exited := make(chan struct{})
	done := make(chan error, 1)
	var got bytes.Buffer
	go func() { done <- Copy(&got, r, exited, Options{Grace: 50 * time.Millisecond}) }()
	close(exited) // the reader may be blocked in Read already: it must learn of the exit
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("copy did not end after the grace")
	}
	if got.String() != "last words\n" {
		t.Fatalf("got %q", got.String())
	}
}
