package httpx

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
)

// These tests talk raw HTTP/1.1 over real sockets to apps built by newApp,
// the function behind NewApp, with deadlines of about a second; one test
// checks NewApp's own 30 s header deadline the same way.

var short = timeouts{header: time.Second, body: time.Second, bodyIdle: time.Second, idle: 2500 * time.Millisecond}

// slack is how late, beyond a deadline, the server may act on it.
const slack = 2 * time.Second

// bodyResult is what a test route saw of its request body.
type bodyResult struct {
	route string
	n     int64
	err   error
}

// serve starts an app with t on a loopback port: an upload route (a
// long-body route), an ordinary POST route and a GET route. Each body route
// reports what it read on the returned channel.
func serve(tb testing.TB, t timeouts) (addr string, seen chan bodyResult) {
	tb.Helper()
	app := newApp(slog.New(slog.NewTextHandler(io.Discard, nil)), nil, t)
	seen = make(chan bodyResult, 16)
	read := func(c *fiber.Ctx) error {
		n, err := io.Copy(io.Discard, BodyReader(c))
		seen <- bodyResult{c.Route().Path, n, err}
		if err != nil {
			return err
		}
		return c.JSON(fiber.Map{"n": n})
	}
	app.Put("/sandboxes/:id/files", read)
	app.Post("/echo", read)
	app.Get("/ping", func(c *fiber.Ctx) error { return c.SendString("pong") })
	app.Post("/refuse", func(c *fiber.Ctx) error { return fiber.ErrUnauthorized })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go app.Listener(ln)
	tb.Cleanup(func() { app.ShutdownWithTimeout(time.Second) })
	return ln.Addr().String(), seen
}

func dial(tb testing.TB, addr string) net.Conn {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// waitClosed reads from c until the server closes it, failing if that takes
// longer than within; it returns how long it took and what was read.
func waitClosed(tb testing.TB, c net.Conn, within time.Duration) (time.Duration, string) {
	tb.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(within))
	got, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		tb.Fatalf("connection still open after %v (read %q)", within, got)
	}
	return time.Since(start), string(got)
}

// assertOpen checks that the server keeps c open and silent for d.
func assertOpen(tb testing.TB, c net.Conn, d time.Duration) {
	tb.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	var b [1]byte
	n, err := c.Read(b[:])
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		tb.Fatalf("server closed or wrote (%d bytes, %v) within %v", n, err, d)
	}
	c.SetReadDeadline(time.Time{})
}

// get sends GET /ping on c and checks the answer.
func get(tb testing.TB, c net.Conn, br *bufio.Reader) {
	tb.Helper()
	if _, err := io.WriteString(c, "GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		tb.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		tb.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "pong" {
		tb.Fatalf("GET /ping: %d %q", resp.StatusCode, body)
	}
	c.SetReadDeadline(time.Time{})
}

// pace writes total bytes to w at rate bytes per second, in pieces every tick.
func pace(w io.Writer, total, rate int64, tick time.Duration) error {
	piece := rate * int64(tick) / int64(time.Second)
	buf := bytes.Repeat([]byte("x"), int(piece))
	t := time.NewTicker(tick)
	defer t.Stop()
	for sent := int64(0); sent < total; {
		n := min(piece, total-sent)
		if _, err := w.Write(buf[:n]); err != nil {
			return err
		}
		sent += n
		if sent < total {
			<-t.C
		}
	}
	return nil
}

func TestHalfRequestLineIsCutAtHeaderDeadline(t *testing.T) {
	t.Parallel()
	addr, _ := serve(t, short)
	c := dial(t, addr)
	if _, err := io.WriteString(c, "GET /pi"); err != nil {
		t.Fatal(err)
	}
	took, answer := waitClosed(t, c, short.header+slack)
	if took < short.header/2 {
		t.Fatalf("closed after %v, before the %v header deadline", took, short.header)
	}
	if answer != "" && !strings.Contains(answer, " 408 ") {
		t.Fatalf("answer to a stalled request line: %q", answer)
	}
}

func TestSilentConnectionIsCutAtHeaderDeadline(t *testing.T) {
	t.Parallel()
	addr, _ := serve(t, short)
	c := dial(t, addr)
	waitClosed(t, c, short.header+slack)
}

// TestNewAppCutsStalledHeaders holds the production deadline: a client that
// sends half a request line is disconnected about HeaderTimeout later.
func TestNewAppCutsStalledHeaders(t *testing.T) {
	t.Parallel()
	addr, _ := serve(t, defaultTimeouts)
	c := dial(t, addr)
	if _, err := io.WriteString(c, "POST /sandboxes HT"); err != nil {
		t.Fatal(err)
	}
	took, _ := waitClosed(t, c, HeaderTimeout+slack)
	if took < HeaderTimeout-slack {
		t.Fatalf("closed after %v, want about %v", took, HeaderTimeout)
	}
}

func TestNewAppConfiguresDeadlines(t *testing.T) {
	app := NewApp(slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	s := app.Server()
	if s.ReadTimeout != HeaderTimeout || s.IdleTimeout != IdleTimeout || s.HeaderReceived == nil {
		t.Fatalf("server: ReadTimeout %v, IdleTimeout %v, HeaderReceived set %v", s.ReadTimeout, s.IdleTimeout, s.HeaderReceived != nil)
	}
	if got := s.HeaderReceived(&fasthttp.RequestHeader{}).ReadTimeout; got != BodyTimeout {
		t.Fatalf("body deadline %v, want %v", got, BodyTimeout)
	}
	if HeaderTimeout > 30*time.Second || BodyTimeout > time.Minute || BodyIdleTimeout > time.Minute || IdleTimeout > 2*time.Minute {
		t.Fatal("deadlines longer than documented")
	}
}

// A keep-alive connection may wait between requests for longer than the
// header deadline (IdleTimeout governs that wait), and is closed once it
// has waited IdleTimeout.
func TestKeepAliveWaitsIdleTimeoutNotHeaderTimeout(t *testing.T) {
	t.Parallel()
	addr, _ := serve(t, short)
	c := dial(t, addr)
	br := bufio.NewReader(c)
	get(t, c, br)
	assertOpen(t, c, short.header+short.header/2) // idle past the header deadline
	get(t, c, br)
	took, _ := waitClosed(t, c, short.idle+slack)
	if took < short.idle-short.idle/4 {
		t.Fatalf("idle connection closed after %v, want about %v", took, short.idle)
	}
}

// A slow but steady upload to an upload route runs for several header and
// body deadlines and succeeds (chunked, as streamed uploads are sent).
func TestSlowUploadOutlivesDeadlines(t *testing.T) {
	t.Parallel()
	addr, seen := serve(t, short)
	c := dial(t, addr)
	const rate, total = 200 << 10, 3 * 200 << 10 // 3 s at 200 KiB/s
	io.WriteString(c, "PUT /sandboxes/sb1/files?path=/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
	cw := &chunkWriter{w: c}
	start := time.Now()
	if err := pace(cw, total, rate, 50*time.Millisecond); err != nil {
		t.Fatalf("upload cut after %v: %v", time.Since(start), err)
	}
	io.WriteString(c, "0\r\n\r\n")
	if took := time.Since(start); took < short.header+short.body {
		t.Fatalf("upload took %v: not longer than the deadlines, proves nothing", took)
	}
	expectUploaded(t, c, seen, total)
}

// A 1 GiB upload with a Content-Length, at a steady rate that makes it last
// several deadlines, succeeds.
func TestGigabyteUploadAtSteadyRate(t *testing.T) {
	t.Parallel()
	addr, seen := serve(t, short)
	c := dial(t, addr)
	const total = 1 << 30
	fmt.Fprintf(c, "PUT /sandboxes/sb1/files?path=/big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", total)
	start := time.Now()
	if err := pace(c, total, total/3, 10*time.Millisecond); err != nil { // about 3 s
		t.Fatalf("upload cut after %v: %v", time.Since(start), err)
	}
	expectUploaded(t, c, seen, total)
}

func expectUploaded(t *testing.T, c net.Conn, seen chan bodyResult, total int64) {
	t.Helper()
	r := <-seen
	if r.err != nil || r.n != total {
		t.Fatalf("handler read %d bytes, %v; want %d", r.n, r.err, total)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != fmt.Sprintf(`{"n":%d}`, total) {
		t.Fatalf("upload answer %d %s", resp.StatusCode, body)
	}
}

// An upload that stops sending is cut BodyIdleTimeout after its last byte.
func TestStalledUploadIsCut(t *testing.T) {
	t.Parallel()
	addr, seen := serve(t, short)
	c := dial(t, addr)
	io.WriteString(c, "PUT /sandboxes/sb1/files?path=/x HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n")
	// Keep it going past the body deadline first, then stall.
	if err := pace(c, 2*200<<10, 200<<10, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	stalled := time.Now()
	expectTimeout(t, seen, "/sandboxes/:id/files", short.bodyIdle+slack)
	if took := time.Since(stalled); took < short.bodyIdle/2 {
		t.Fatalf("cut %v after the stall, before the %v idle deadline", took, short.bodyIdle)
	}
	if _, answer := waitClosed(t, c, slack); !strings.HasPrefix(answer, "HTTP/1.1 408 ") || !strings.Contains(answer, `"code":"request_timeout"`) {
		t.Fatalf("answer to a stalled upload: %q", answer)
	}
}

// An ordinary route's body must arrive within BodyTimeout of the headers,
// however steadily it trickles.
func TestSlowOrdinaryBodyIsCut(t *testing.T) {
	t.Parallel()
	addr, seen := serve(t, short)
	c := dial(t, addr)
	start := time.Now()
	io.WriteString(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n")
	go pace(c, 10000000, 100<<10, 50*time.Millisecond) // would take 100 s
	expectTimeout(t, seen, "/echo", short.body+slack)
	if took := time.Since(start); took < short.body/2 {
		t.Fatalf("cut after %v, before the %v body deadline", took, short.body)
	}
	waitClosed(t, c, slack)
}

func expectTimeout(t *testing.T, seen chan bodyResult, route string, within time.Duration) {
	t.Helper()
	select {
	case r := <-seen:
		var fe *fiber.Error
		if r.route != route || !errors.As(r.err, &fe) || fe.Code != fiber.StatusRequestTimeout {
			t.Fatalf("%s read %d bytes, %v; want a 408 error", r.route, r.n, r.err)
		}
	case <-time.After(within):
		t.Fatalf("body still being read after %v", within)
	}
}

// A handler that answers without reading a streamed body (a refused
// upload) leaves the rest of the body on the connection: it must not be
// served as a request of its own. What the server already buffered is
// skipped and the connection kept; with more on the way it is closed.
func TestUnreadBodyIsNotTakenForARequest(t *testing.T) {
	t.Parallel()
	addr, _ := serve(t, short)
	refuse := func(c net.Conn, pad int) {
		body := strings.Repeat("x", pad) + "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
		fmt.Fprintf(c, "POST /refuse HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	}
	// 100 KiB: more than the server reads ahead.
	c := dial(t, addr)
	refuse(c, 100<<10)
	if _, answer := waitClosed(t, c, slack); !strings.HasPrefix(answer, "HTTP/1.1 401 ") || strings.Count(answer, "HTTP/1.1") != 1 {
		t.Fatalf("answer to a refused 100 KiB body: %q", answer)
	}
	// 8 KiB and a small body: all in the server's buffer.
	c = dial(t, addr)
	br := bufio.NewReader(c)
	for _, pad := range []int{8 << 10, 10} {
		refuse(c, pad)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 401 || resp.Close {
			t.Fatalf("refused %d-byte body: %v, %+v", pad, err, resp)
		}
		io.ReadAll(resp.Body)
		get(t, c, br) // the next answer is to this request, not to /smuggled
	}
}

// chunkWriter writes each Write as one HTTP/1.1 chunk.
type chunkWriter struct{ w io.Writer }

func (c *chunkWriter) Write(b []byte) (int, error) {
	if _, err := fmt.Fprintf(c.w, "%x\r\n%s\r\n", len(b), b); err != nil {
		return 0, err
	}
	return len(b), nil
}
