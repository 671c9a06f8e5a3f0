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
	OOMKills       prometheus.Counter // commands the sandbox's OOM killer took
	FileBytes      *prometheus.CounterVec

	ProcessStarts  *prometheus.CounterVec // by mode: stream, background
	StreamsActive  prometheus.Gauge       // process output streams open (runs and connects)
	StreamBytes    *prometheus.CounterVec // process output relayed, by stream: stdout, stderr
	PTYActive      prometheus.Gauge
	PTYSessions    prometheus.Counter
	PTYBytes       *prometheus.CounterVec // terminal bytes relayed, by direction: in, out
	WatchesActive  prometheus.Gauge
	WatchEvents    prometheus.Counter
	ConnRefusals   *prometheus.CounterVec // streams refused for want of a slot, by scope: sandbox, worker
	OrphansRemoved prometheus.Counter     // containers of this worker no sandbox owned

	ImagePulls        *prometheus.CounterVec // by result: ok, error
	ImagePullRefusals *prometheus.CounterVec // by reason
	ImagesRemoved     prometheus.Counter
	ImagePullDuration prometheus.Histogram

	DiskLimitBytes prometheus.Gauge // sum of the live sandboxes' disk limits
	DiskUsedBytes  prometheus.Gauge // sum of what they use, as of the last reconcile
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
		OOMKills: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "opensandbox_commands_oom_killed_total", Help: "Commands killed because their sandbox ran out of memory (the sandbox lives on).",
		}),
		FileBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "opensandbox_file_bytes_total", Help: "File bytes moved through the data path, by direction (upload, download).",
		}, []string{"direction"}),
	}
	m.ProcessStarts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "opensandbox_process_starts_total", Help: "Streamed and background processes started, by mode (stream, background).",
	}, []string{"mode"})
	m.StreamsActive = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "opensandbox_process_streams_active", Help: "Process output streams open (streamed runs and connects).",
	})
	m.StreamBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "opensandbox_process_stream_bytes_total", Help: "Process output relayed to clients, by stream (stdout, stderr).",
	}, []string{"stream"})
	m.PTYActive = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "opensandbox_pty_sessions_active", Help: "Terminal sessions whose shell is running.",
	})
	m.PTYSessions = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "opensandbox_pty_sessions_total", Help: "Terminal sessions started.",
	})
	m.PTYBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "opensandbox_pty_bytes_total", Help: "Terminal bytes relayed, by direction (in: keystrokes, out: output).",
	}, []string{"direction"})
	m.WatchesActive = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "opensandbox_file_watches_active", Help: "File watch streams open.",
	})
	m.WatchEvents = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "opensandbox_file_watch_events_total", Help: "File watch events delivered.",
	})
	m.ConnRefusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "opensandbox_stream_refusals_total", Help: "Streams, terminals and watches refused (429 too_many_connections), by scope (sandbox, worker).",
	}, []string{"scope"})
	m.OrphansRemoved = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "opensandbox_orphan_containers_removed_total", Help: "Containers of this worker that no sandbox owned (a create cut off by a restart), removed by the reconciler.",
	})
	m.ImagePulls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "opensandbox_image_pulls_total", Help: "Images pulled for templates that name an image reference, by result (ok, error).",
	}, []string{"result"})
	m.ImagePullRefusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "opensandbox_image_pull_refusals_total",
		Help: "Image pulls refused, by reason (pulls_disabled, registry_not_allowed, private_address, unresolvable, too_large).",
	}, []string{"reason"})
	m.ImagesRemoved = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "opensandbox_images_removed_total", Help: "Pulled images removed after going unused for OPENSANDBOX_IMAGE_GC_AFTER.",
	})
	m.ImagePullDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "opensandbox_image_pull_duration_seconds", Help: "Time to pull an image.",
		Buckets: []float64{.5, 1, 2, 5, 10, 30, 60, 120, 300},
	})
	m.DiskLimitBytes = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "opensandbox_sandbox_disk_limit_bytes", Help: "Sum of the disk limits of the sandboxes running on this worker.",
	})
	m.DiskUsedBytes = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "opensandbox_sandbox_disk_used_bytes", Help: "Sum of the disk the sandboxes on this worker use (per-sandbox disk images; updated every reconcile).",
	})
	reg.MustRegister(m.DiskLimitBytes, m.DiskUsedBytes)
	reg.MustRegister(m.Active, m.CreateDuration, m.CreateErrors, m.Destroyed, m.ExecDuration, m.Commands, m.OOMKills, m.FileBytes,
		m.ProcessStarts, m.StreamsActive, m.StreamBytes, m.PTYActive, m.PTYSessions, m.PTYBytes, m.WatchesActive, m.WatchEvents, m.ConnRefusals, m.OrphansRemoved,
		m.ImagePulls, m.ImagePullRefusals, m.ImagePullDuration, m.ImagesRemoved)
	return m
}
