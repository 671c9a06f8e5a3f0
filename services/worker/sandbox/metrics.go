package sandbox

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the sandbox manager's Prometheus metrics.
type Metrics struct {
	Active         prometheus.Gauge
	CreateDuration *prometheus.HistogramVec
	CreateErrors   *prometheus.CounterVec
	Destroyed      *prometheus.CounterVec
	ExecDuration   prometheus.Histogram
	Commands       *prometheus.CounterVec
	FileBytes      *prometheus.CounterVec
}

// NewMetrics registers the metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "opensandbox_sandboxes_active", Help: "Sandboxes running on this worker.",
		}),
		CreateDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "opensandbox_sandbox_create_duration_seconds", Help: "Time from create request to a ready agent.",
			Buckets: []float64{.05, .1, .15, .2, .3, .5, .75, 1, 2, 5, 10},
		}, []string{"template"}),
		CreateErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "opensandbox_sandbox_create_errors_total", Help: "Sandbox creates that failed, by error code.",
		}, []string{"code"}),
		Destroyed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "opensandbox_sandboxes_destroyed_total", Help: "Sandboxes destroyed, by reason (killed, timeout, error).",
		}, []string{"reason"}),
		ExecDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "opensandbox_exec_duration_seconds", Help: "Command round trip through the agent.",
			Buckets: []float64{.001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 5, 30, 60},
		}),
		Commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "opensandbox_commands_total", Help: "Commands run, by exit class (ok, nonzero, timeout, error).",
		}, []string{"exit_class"}),
		FileBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "opensandbox_file_bytes_total", Help: "File bytes moved through the data path, by direction (upload, download).",
		}, []string{"direction"}),
	}
	reg.MustRegister(m.Active, m.CreateDuration, m.CreateErrors, m.Destroyed, m.ExecDuration, m.Commands, m.FileBytes)
	return m
}
