//go:build integration

package opensandbox_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	opensandbox "github.com/opensandbox/opensandbox/sdks/go"
)

func TestWatch(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t, time.Minute)
	files := newSandbox(t, "busybox").Files()
	if _, err := files.MakeDir(ctx, "/watched/sub"); err != nil {
		t.Fatal(err)
	}

	w, err := files.Watch(ctx, "/watched", opensandbox.WatchOptions{Recursive: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	expect := func(typ, path string) {
		t.Helper()
		deadline := time.After(15 * time.Second)
		for {
			select {
			case ev, ok := <-w.Events():
				if !ok {
					t.Fatalf("watch ended waiting for %s %s: %v", typ, path, w.Err())
				}
				if ev.Type == typ && ev.Path == path {
					return
				}
			case <-deadline:
				t.Fatalf("no %s event for %s", typ, path)
			}
		}
	}
	if _, err := files.Write(ctx, "/watched/a.txt", strings.NewReader("a")); err != nil {
		t.Fatal(err)
	}
	expect(opensandbox.EventCreate, "/watched/a.txt")
	if _, err := files.Write(ctx, "/watched/sub/b.txt", strings.NewReader("b")); err != nil {
		t.Fatal(err)
	}
	expect(opensandbox.EventCreate, "/watched/sub/b.txt") // recursive
	if err := files.Remove(ctx, "/watched/a.txt"); err != nil {
		t.Fatal(err)
	}
	expect(opensandbox.EventRemove, "/watched/a.txt")
	if err := w.Close(); err != nil || w.Err() != nil {
		t.Fatalf("close: %v, %v", err, w.Err())
	}
	if _, open := <-w.Events(); open {
		t.Fatal("events still open after Close")
	}
	<-w.Done()

	// The callback form.
	seen := make(chan opensandbox.FilesystemEvent, 16)
	w2, err := files.Watch(ctx, "/watched/sub", opensandbox.WatchOptions{OnEvent: func(ev opensandbox.FilesystemEvent) { seen <- ev }})
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	if _, err := files.Write(ctx, "/watched/sub/c.txt", strings.NewReader("c")); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(15 * time.Second)
	for found := false; !found; {
		select {
		case ev := <-seen:
			found = ev.Path == "/watched/sub/c.txt"
		case <-deadline:
			t.Fatal("the callback saw no event for /watched/sub/c.txt")
		}
	}

	_, err = files.Watch(ctx, "/not/there", opensandbox.WatchOptions{})
	if !errors.Is(err, opensandbox.ErrNotFound) {
		t.Fatalf("watch of a missing path: %v", err)
	}
}

func TestPTY(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t, time.Minute)
	sbx := newSandbox(t, "base")

	var out syncBuffer
	h, err := sbx.PTY().Create(ctx, 80, 24, out.Write)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if h.SessionID == "" {
		t.Fatal("no session id")
	}
	from := out.Len()
	if err := h.Send(ctx, []byte("stty size\n")); err != nil {
		t.Fatal(err)
	}
	out.waitFor(t, from, "24 80")
	if err := h.Resize(ctx, 100, 40); err != nil {
		t.Fatal(err)
	}
	from = out.Len()
	if err := h.Send(ctx, []byte("stty size; echo $TERM\n")); err != nil {
		t.Fatal(err)
	}
	out.waitFor(t, from, "40 100")
	out.waitFor(t, from, "xterm-256color")
	if err := h.Send(ctx, []byte("exit 3\n")); err != nil {
		t.Fatal(err)
	}
	code, err := h.Wait(ctx)
	if err != nil || code != 3 {
		t.Fatalf("wait: %d, %v; want exit code 3", code, err)
	}

	// Reattach after a dropped connection, then kill.
	var out2 syncBuffer
	h2, err := sbx.PTY().CreateWithOptions(ctx, opensandbox.PTYOptions{Cols: 60, Rows: 20, Cwd: "/tmp", OnData: out2.Write})
	if err != nil {
		t.Fatal(err)
	}
	if err := h2.Send(ctx, []byte("echo marker-$((6*7)); pwd\n")); err != nil {
		t.Fatal(err)
	}
	out2.waitFor(t, 0, "marker-42")
	h2.Close()
	var out3 syncBuffer
	h3, err := sbx.PTY().Connect(ctx, h2.SessionID, out3.Write)
	if err != nil {
		t.Fatal(err)
	}
	out3.waitFor(t, 0, "marker-42") // scrollback
	out3.waitFor(t, 0, "/tmp")
	if err := h3.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h3.Done():
	case <-time.After(15 * time.Second):
		t.Fatal("the connection stayed open after Kill")
	}
	if _, err := sbx.PTY().Connect(ctx, h2.SessionID, nil); !errors.Is(err, opensandbox.ErrNotFound) {
		t.Fatalf("connect to a killed session: %v", err)
	}
}
