package grpcx

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// Metrics count gRPC calls by method and status code, on one side (client
// or server).
type Metrics struct {
	Requests *prometheus.CounterVec
	Duration *prometheus.HistogramVec
}

// NewMetrics registers the metrics of side ("client" or "server") with reg.
func NewMetrics(reg prometheus.Registerer, side string) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "opensandbox_grpc_" + side + "_requests_total", Help: "gRPC calls by method and status code (" + side + " side).",
		}, []string{"method", "code"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "opensandbox_grpc_" + side + "_request_duration_seconds", Help: "gRPC call duration by method (" + side + " side; streams until they end).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 120},
		}, []string{"method"}),
	}
	reg.MustRegister(m.Requests, m.Duration)
	return m
}

func (m *Metrics) observe(method string, start time.Time, err error) {
	m.Requests.WithLabelValues(method, status.Code(err).String()).Inc()
	m.Duration.WithLabelValues(method).Observe(time.Since(start).Seconds())
}

// UnaryServer records unary calls served.
func (m *Metrics) UnaryServer(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := h(ctx, req)
	m.observe(info.FullMethod, start, err)
	return resp, err
}

// StreamServer records streams served.
func (m *Metrics) StreamServer(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	start := time.Now()
	err := h(srv, ss)
	m.observe(info.FullMethod, start, err)
	return err
}

// UnaryClient records unary calls made.
func (m *Metrics) UnaryClient(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	start := time.Now()
	err := invoker(ctx, method, req, reply, cc, opts...)
	m.observe(method, start, err)
	return err
}

// StreamClient records streams opened (their set-up, not their lifetime).
func (m *Metrics) StreamClient(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	start := time.Now()
	s, err := streamer(ctx, desc, cc, method, opts...)
	m.observe(method, start, err)
	return s, err
}
