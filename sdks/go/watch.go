package opensandbox

import (
	"context"
	"io"
	"net/http"
	"sync"
)

// WatchOptions configures Files.Watch.
type WatchOptions struct {
	Recursive bool // watch the whole tree below the path
	// OnEvent, when set, receives each event on the watcher's goroutine
	// instead of the Events channel (which then stays empty and is closed at
	// the end).
	OnEvent func(FilesystemEvent)
}

// Watcher follows changes below a directory until Close or ctx ends.
type Watcher struct {
	events chan FilesystemEvent
	cancel context.CancelFunc
	done   chan struct{}

	mu  sync.Mutex
	err error
}

// Watch starts watching path and returns once the watch is in place, so
// every change made after Watch returns is seen. A missing path answers an
// error matching ErrNotFound.
func (f *Files) Watch(ctx context.Context, path string, opts WatchOptions) (*Watcher, error) {
	q := pathQuery(path)
	if opts.Recursive {
		q.Set("recursive", "true")
	}
	wctx, cancel := context.WithCancel(ctx)
	resp, err := f.sbx.dataRaw(wctx, http.MethodGet, "/files/watch", q, nil, -1,
		http.Header{"Accept": {"text/event-stream"}})
	if err != nil {
		cancel()
		return nil, err
	}
	op := "watch " + path
	sse := newSSEReader(resp.Body)
	// The first event says the watch is in place.
	ev, err := sse.nextEvent()
	if err == nil && ev.Type == "error" {
		err = streamError(op, ev)
	} else if err == nil && ev.Type != "ready" {
		err = &Error{Op: op, Code: CodeUnexpectedAnswer, Message: "the watch stream did not start with ready but " + ev.Type}
	}
	if err != nil {
		resp.Body.Close()
		cancel()
		return nil, transportError(op, err)
	}
	w := &Watcher{events: make(chan FilesystemEvent, 64), cancel: cancel, done: make(chan struct{})}
	go w.run(wctx, op, resp.Body, sse, opts.OnEvent)
	return w, nil
}

func (w *Watcher) run(ctx context.Context, op string, body io.ReadCloser, sse *sseReader, fn func(FilesystemEvent)) {
	defer close(w.done)
	defer close(w.events)
	defer body.Close()
	for {
		ev, err := sse.nextEvent()
		if err != nil {
			if ctx.Err() == nil && err != io.EOF {
				w.setErr(transportError(op, err))
			}
			return
		}
		switch ev.Type {
		case "error":
			w.setErr(streamError(op, ev))
			return
		case "ready":
			continue
		}
		fe := FilesystemEvent{Type: ev.Type, Path: ev.Path, IsDir: ev.IsDir}
		if fn != nil {
			fn(fe)
			continue
		}
		select {
		case w.events <- fe:
		case <-ctx.Done():
			return
		}
	}
}

func (w *Watcher) setErr(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.err = err
}

// Events delivers the changes; it is closed when the watch ends.
func (w *Watcher) Events() <-chan FilesystemEvent { return w.events }

// Done is closed when the watch has ended.
func (w *Watcher) Done() <-chan struct{} { return w.done }

// Err tells why the watch ended on its own; nil after Close or a clean end.
func (w *Watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Close ends the watch and waits for its goroutine.
func (w *Watcher) Close() error {
	w.cancel()
	<-w.done
	return nil
}
