// Package httpx builds the Fiber apps of OpenSandbox services: JSON errors
// mapped in one place, a request id and one log line per request, HTTP
// metrics by route, and read deadlines on every connection.
//
// Read deadlines (against slowloris clients, which hold a goroutine and a
// read buffer per connection by trickling their request):
//
//   - a request's line and headers must arrive within HeaderTimeout, counted
//     from when the connection opened or, on a keep-alive connection, from
//     the first byte of the request;
//   - an ordinary body must arrive within BodyTimeout of its headers;
//   - the bodies of long-body routes (file uploads, process stdin: see
//     longBodyRoutes) have no overall deadline: each read through BodyReader
//     must make progress within BodyIdleTimeout, so a 1 GiB upload at any
//     steady rate works while a stalled one is cut (nginx's
//     client_body_timeout);
//   - a keep-alive connection waiting for its next request is closed after
//     IdleTimeout.
//
// Responses have no deadline: Server-Sent Events streams and long commands
// answer for as long as they need, and WebSockets, once upgraded, carry
// their own deadlines (the server clears the connection's on hijack).
package httpx

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/shared/errs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// MaxJSONBody bounds JSON request bodies (commands carry stdin).
const MaxJSONBody = 16 << 20

// Read deadlines of every app NewApp builds (see the package comment).
const (
	HeaderTimeout   = 30 * time.Second
	BodyTimeout     = 60 * time.Second
	BodyIdleTimeout = 60 * time.Second
	IdleTimeout     = 120 * time.Second
)

// longBodyRoutes are the routes (method and Fiber route pattern) whose
// request bodies may legitimately take longer than BodyTimeout: uploads of
// any size, and process stdin, which waits while the process does not read.
// Their handlers must read the body through BodyReader.
var longBodyRoutes = map[string]bool{
	fiber.MethodPut + " /sandboxes/:id/files":                 true,
	fiber.MethodPost + " /sandboxes/:id/processes/:pid/stdin": true,
}

// timeouts are an app's read deadlines; tests shorten them.
type timeouts struct {
	header, body, bodyIdle, idle time.Duration
}

var defaultTimeouts = timeouts{header: HeaderTimeout, body: BodyTimeout, bodyIdle: BodyIdleTimeout, idle: IdleTimeout}

// localBody is the Fiber local holding the request's *bodyState.
const localBody = "httpx.body"

// Metrics are the HTTP metrics of one service.
type Metrics struct {
	Requests *prometheus.CounterVec
	Duration *prometheus.HistogramVec
}

// NewMetrics registers the HTTP metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "opensandbox_http_requests_total", Help: "HTTP requests by route, method and status.",
		}, []string{"route", "method", "status"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "opensandbox_http_request_duration_seconds", Help: "HTTP request duration by route and method.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route", "method"}),
	}
	reg.MustRegister(m.Requests, m.Duration)
	return m
}

// NewApp returns a Fiber app with request ids, logging, metrics, JSON
// errors and read deadlines. Request bodies are streamed (large uploads never
// sit in memory); handlers read JSON through ReadJSON, which enforces
// MaxJSONBody, and other bodies through BodyReader.
func NewApp(log *slog.Logger, m *Metrics) *fiber.App {
	return newApp(log, m, defaultTimeouts)
}

func newApp(log *slog.Logger, m *Metrics, t timeouts) *fiber.App {
	app := fiber.New(fiber.Config{
		AppName:               "opensandbox",
		DisableStartupMessage: true,
		// Fiber's strings alias reused buffers by default; values kept past a
		// request (metric labels, ids handed to goroutines) must be copies.
		Immutable:         true,
		StreamRequestBody: true,
		BodyLimit:         1 << 20, // bodies up to this size are buffered, larger ones streamed
		ReadBufferSize:    16 << 10,
		ErrorHandler:      errorHandler(log),
		// fasthttp sets ReadTimeout as the read deadline when a connection
		// opens and again at the first byte of each further request (after
		// IdleTimeout has bounded the wait for it): it covers the headers.
		ReadTimeout: t.header,
		IdleTimeout: t.idle,
	})
	// Once the headers are in, the body gets its own deadline; long-body
	// routes push it forward as they read (BodyReader).
	app.Server().HeaderReceived = func(*fasthttp.RequestHeader) fasthttp.RequestConfig {
		return fasthttp.RequestConfig{ReadTimeout: t.body}
	}
	app.Use(requestMiddleware(log, m, t))
	return app
}

const localStart = "requestStart"

// SinceStart returns how long ago the current request reached the server's
// first middleware (0 outside it).
func SinceStart(c *fiber.Ctx) time.Duration {
	t, ok := c.Locals(localStart).(time.Time)
	if !ok {
		return 0
	}
	return time.Since(t)
}

// RequestID returns the id of the current request.
func RequestID(c *fiber.Ctx) string {
	id, _ := c.Locals("requestID").(string)
	return id
}

func requestMiddleware(log *slog.Logger, m *Metrics, t timeouts) fiber.Handler {
	return func(c *fiber.Ctx) error {
		start := time.Now()
		st := &bodyState{body: t.body, bodyIdle: t.bodyIdle}
		c.Locals(localBody, st)
		id := c.Get("X-Request-Id")
		if id == "" || len(id) > 64 || strings.ContainsAny(id, " \t\r\n") {
			var b [8]byte
			rand.Read(b[:])
			id = hex.EncodeToString(b[:])
		}
		c.Locals("requestID", id)
		c.Locals(localStart, start)
		c.Set("X-Request-Id", id)

		err := c.Next()
		if err != nil {
			// Render the error now so the status below is the one sent.
			if herr := c.App().Config().ErrorHandler(c, err); herr != nil {
				c.Status(fiber.StatusInternalServerError)
			}
		}
		finishBody(c, st)
		status := c.Response().StatusCode()
		route := c.Route().Path
		if status == fiber.StatusNotFound && route == "/" {
			route = "unmatched"
		}
		method := c.Method()
		if m != nil {
			m.Requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
			m.Duration.WithLabelValues(route, method).Observe(time.Since(start).Seconds())
		}
		level := slog.LevelInfo
		if status >= 500 {
			level = slog.LevelError
		}
		attrs := []any{"request_id", id, "method", method, "route", route, "path", c.Path(), "status", status, "duration_ms", float64(time.Since(start).Microseconds()) / 1000}
		if err != nil && status >= 500 {
			attrs = append(attrs, "err", err.Error())
		}
		log.Log(c.UserContext(), level, "request", attrs...)
		return nil
	}
}

func errorHandler(log *slog.Logger) fiber.ErrorHandler {
	return func(c *fiber.Ctx, err error) error {
		var fe *fiber.Error
		if errors.As(err, &fe) {
			code := strings.ToLower(strings.ReplaceAll(fiberCodeName(fe.Code), " ", "_"))
			return c.Status(fe.Code).JSON(api.ErrorBody{Error: fe.Message, Code: code})
		}
		e := errs.As(err)
		return c.Status(e.Kind.HTTPStatus()).JSON(api.ErrorBody{Error: e.Message, Code: e.Code})
	}
}

func fiberCodeName(status int) string {
	switch status {
	case fiber.StatusNotFound:
		return "not found"
	case fiber.StatusMethodNotAllowed:
		return "method not allowed"
	case fiber.StatusRequestEntityTooLarge:
		return "body too large"
	case fiber.StatusRequestTimeout:
		return "request timeout"
	default:
		return "http " + strconv.Itoa(status)
	}
}

// ReadJSON decodes the request body into v, answering 413 above MaxJSONBody
// and 400 for malformed JSON.
func ReadJSON(c *fiber.Ctx, v any) error {
	if n := c.Request().Header.ContentLength(); n > MaxJSONBody {
		io.Copy(io.Discard, io.LimitReader(BodyReader(c), 64<<20)) // let the client read the answer
		return errs.TooLarge("request body is over the limit of %d bytes", MaxJSONBody)
	}
	body, err := io.ReadAll(io.LimitReader(BodyReader(c), MaxJSONBody+1))
	if fe := (*fiber.Error)(nil); errors.As(err, &fe) {
		return err // 408: the body did not arrive in time
	}
	if err != nil {
		return errs.Invalid("read request body: %v", err)
	}
	if len(body) > MaxJSONBody {
		return errs.TooLarge("request body is over the limit of %d bytes", MaxJSONBody)
	}
	if len(body) == 0 {
		return errs.Invalid("request body must be JSON")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return errs.Invalid("malformed JSON: %v", err)
	}
	return nil
}

// BodyReader returns the request body as a stream. On a long-body route
// (longBodyRoutes) each read first moves the connection's read deadline to
// BodyIdleTimeout from now, so the body may take as long as it needs while
// it keeps coming; time the handler spends between reads (a slow consumer)
// does not count. A body that misses its deadline reads as a 408 *fiber.Error.
func BodyReader(c *fiber.Ctx) io.Reader {
	r := c.Context().RequestBodyStream()
	if r == nil {
		return bytes.NewReader(c.Body())
	}
	st, _ := c.Locals(localBody).(*bodyState)
	if st == nil {
		return r // an app not built by NewApp
	}
	br := &bodyReader{r: r, st: st}
	if conn := c.Context().Conn(); conn != nil && longBodyRoutes[c.Method()+" "+c.Route().Path] {
		br.conn = conn
	}
	return br
}

// bodyState is what the request middleware and the readers BodyReader hands
// out share about one request's body. Readers may run on other goroutines.
type bodyState struct {
	body, bodyIdle time.Duration // the app's deadlines
	eof            atomic.Bool   // a reader reached the end of the body
}

// bodyReader reads a streamed body, notes its end, and, when conn is set
// (a long-body route), extends conn's read deadline before each read.
type bodyReader struct {
	r     io.Reader
	st    *bodyState
	conn  interface{ SetReadDeadline(time.Time) error }
	until time.Time // the last read deadline set
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.conn != nil {
		// Setting a deadline costs a timer update; skip it while the last
		// one is still almost a whole idle period away.
		if d := time.Now().Add(b.st.bodyIdle); d.Sub(b.until) > b.st.bodyIdle/16 {
			if err := b.conn.SetReadDeadline(d); err != nil {
				return 0, err
			}
			b.until = d
		}
	}
	n, err := b.r.Read(p)
	var ne net.Error
	switch {
	case err == io.EOF:
		b.st.eof.Store(true)
	case errors.As(err, &ne) && ne.Timeout():
		if b.conn != nil {
			err = fiber.NewError(fiber.StatusRequestTimeout, fmt.Sprintf("no request body data for %v", b.st.bodyIdle))
		} else {
			err = fiber.NewError(fiber.StatusRequestTimeout, fmt.Sprintf("request body not received within %v", b.st.body))
		}
	}
	return n, err
}

// finishBody runs after the handler. A streamed body the handler did not
// read to its end still has bytes on the connection, which must not be
// taken for the next request: what is already buffered is skipped, and if
// more is left the connection is closed after the answer.
func finishBody(c *fiber.Ctx, st *bodyState) {
	r := c.Context().RequestBodyStream()
	if r == nil || st.eof.Load() {
		return // no streamed body, or read whole (c.Body() ends the stream)
	}
	conn := c.Context().Conn()
	if conn == nil {
		c.Context().SetConnectionClose()
		return
	}
	// Reads that would wait for the network fail at once. The next request
	// on the connection sets its own deadline.
	conn.SetReadDeadline(time.Now())
	const most = 64 << 10
	if n, err := io.Copy(io.Discard, io.LimitReader(r, most)); err != nil || n == most {
		c.Context().SetConnectionClose()
	}
}

// MetricsHandler serves reg in the Prometheus text format.
func MetricsHandler(reg prometheus.Gatherer) fiber.Handler {
	h := fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return func(c *fiber.Ctx) error {
		h(c.Context())
		return nil
	}
}
