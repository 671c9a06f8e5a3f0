package syncer

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the syncer's Prometheus metrics.
type Metrics struct {
	Written       prometheus.Counter
	WriteErrors   prometheus.Counter
	DeadLettered  prometheus.Counter
	Pending       prometheus.Gauge
	Lag           prometheus.Histogram
	BatchDuration prometheus.Histogram
}

// NewMetrics registers the syncer's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Written: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "opensandbox_syncer_events_written_total", Help: "Events committed to PostgreSQL (redeliveries included, written once).",
		}),
		WriteErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "opensandbox_syncer_write_errors_total", Help: "Batch writes that failed and were retried.",
		}),
		DeadLettered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "opensandbox_syncer_dead_lettered_total", Help: "Events moved to the dead-letter subject.",
		}),
		Pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "opensandbox_syncer_pending", Help: "Events in JetStream not yet committed (pending + ack pending).",
		}),
		Lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "opensandbox_syncer_event_lag_seconds", Help: "Event age when its row commits in PostgreSQL.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2, 3, 5, 10, 30, 60},
		}),
		BatchDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "opensandbox_syncer_batch_duration_seconds", Help: "Time to write one batch.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 5},
		}),
	}
	reg.MustRegister(m.Written, m.WriteErrors, m.DeadLettered, m.Pending, m.Lag, m.BatchDuration)
	return m
}
