package httpapi

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/opensandbox/opensandbox/services/shared/api"
)

// hangupPoll is how often a long answer (an SSE stream, a plain command)
// checks that its client is still there; a run dies with its client.
const hangupPoll = 250 * time.Millisecond

// sseSource produces the events of one stream. next returns the event's
// type (api.EventKeepalive for a comment line) and its JSON body; any error
// ends the stream. close releases the source.
type sseSource interface {
	next() (typ string, body any, err error)
	close()
}

// serveSSE answers with a Server-Sent Events stream from src (docs/api.md,
// "Streams"). cancel must end the context src was opened with: it is called
// when the client hangs up, which unblocks a next that waits.
func serveSSE(c *fiber.Ctx, src sseSource, cancel context.CancelFunc) error {
	c.Set(fiber.HeaderContentType, "text/event-stream")
	c.Set(fiber.HeaderCacheControl, "no-cache")
	c.Set("X-Accel-Buffering", "no") // proxies must not hold events back
	// The client learns that the stream is open at once, not with the first
	// event, which for a silent process comes only with the keepalive.
	c.Context().Response.ImmediateHeaderFlush = true
	conn := c.Context().Conn()
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		stop := watchHangup(conn, cancel)
		defer stop()
		defer cancel()
		defer src.close()
		for {
			typ, body, err := src.next()
			if err != nil {
				return
			}
			if typ == api.EventKeepalive {
				w.WriteString(": keepalive\n\n")
			} else if err := writeEvent(w, typ, body); err != nil {
				return
			}
			if err := w.Flush(); err != nil {
				return // the client is gone
			}
		}
	})
	return nil
}

// writeEvent writes one event: an event line repeating the type for
// browsers' EventSource, one data line of JSON, a blank line.
func writeEvent(w *bufio.Writer, typ string, body any) error {
	w.WriteString("event: ")
	w.WriteString(typ)
	w.WriteString("\ndata: ")
	if ev, ok := body.(api.ProcessEvent); ok && (ev.Type == api.EventStdout || ev.Type == api.EventStderr) {
		// Output is most of a stream's bytes: base64 goes straight into
		// the writer instead of through encoding/json and its copies.
		w.WriteString(`{"type":"`)
		w.WriteString(ev.Type)
		w.WriteString(`","data":"`)
		enc := base64.NewEncoder(base64.StdEncoding, w)
		enc.Write(ev.Data)
		enc.Close()
		w.WriteString(`"}`)
	} else {
		var b []byte
		var err error
		if m, ok := body.(json.Marshaler); ok {
			b, err = m.MarshalJSON() // its own output is valid JSON; json.Marshal would re-scan it
		} else {
			b, err = json.Marshal(body)
		}
		if err != nil {
			return err
		}
		w.Write(b)
	}
	_, err := w.WriteString("\n\n")
	return err
}

// watchHangup calls onHangup once the peer of conn has closed it. Once the
// request is read, nobody reads the connection until the answer is sent
// (an SSE stream, a command running), so peeking at it consumes nothing; an
// orderly close reads as zero bytes. It returns a function that stops
// watching.
func watchHangup(conn net.Conn, onHangup func()) (stop func()) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return func() {} // not a socket (tests, TLS): writes still fail once it is gone
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(hangupPoll)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if peerClosed(rc) {
					onHangup()
					return
				}
			}
		}
	}()
	return sync.OnceFunc(func() { close(done) })
}

func peerClosed(rc syscall.RawConn) bool {
	closed := false
	var b [1]byte
	err := rc.Control(func(fd uintptr) {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		closed = (n == 0 && err == nil) || (err != nil && err != syscall.EAGAIN && err != syscall.EINTR)
	})
	return closed || err != nil
}
