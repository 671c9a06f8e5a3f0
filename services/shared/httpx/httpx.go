// Package httpx builds the Fiber apps of OpenSandbox services: JSON errors
// mapped in one place, a request id and one log line per request, and HTTP
// metrics by route.
package httpx

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/shared/errs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// MaxJSONBody bounds JSON request bodies (commands carry stdin).
const MaxJSONBody = 16 << 20

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

// NewApp returns a Fiber app with request ids, logging, metrics and JSON
// errors. Request bodies are streamed (large uploads never sit in memory);
// handlers read JSON through ReadJSON, which enforces MaxJSONBody.
func NewApp(log *slog.Logger, m *Metrics) *fiber.App {
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
		ReadTimeout:       0,
		IdleTimeout:       120 * time.Second,
	})
	app.Use(requestMiddleware(log, m))
	return app
}

// RequestID returns the id of the current request.
func RequestID(c *fiber.Ctx) string {
	id, _ := c.Locals("requestID").(string)
	return id
}

func requestMiddleware(log *slog.Logger, m *Metrics) fiber.Handler {
	return func(c *fiber.Ctx) error {
		start := time.Now()
		id := c.Get("X-Request-Id")
		if id == "" || len(id) > 64 || strings.ContainsAny(id, " \t\r\n") {
			var b [8]byte
			rand.Read(b[:])
			id = hex.EncodeToString(b[:])
		}
		c.Locals("requestID", id)
		c.Set("X-Request-Id", id)

		err := c.Next()
		if err != nil {
			// Render the error now so the status below is the one sent.
			if herr := c.App().Config().ErrorHandler(c, err); herr != nil {
				c.Status(fiber.StatusInternalServerError)
			}
		}
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

// BodyReader returns the request body as a stream.
func BodyReader(c *fiber.Ctx) io.Reader {
	if r := c.Context().RequestBodyStream(); r != nil {
		return r
	}
	return bytes.NewReader(c.Body())
}

// MetricsHandler serves reg in the Prometheus text format.
func MetricsHandler(reg prometheus.Gatherer) fiber.Handler {
	h := fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return func(c *fiber.Ctx) error {
		h(c.Context())
		return nil
	}
}
