package syncer

import (
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler serves GET /health (backlog and lag as JSON; 503 while failing;
// no error text: it is unauthenticated, and the logs have the errors) and
// GET /metrics.
func (s *Syncer) Handler(reg prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		st := s.Status(r.Context())
		w.Header().Set("Content-Type", "application/json")
		if !st.OK {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		json.NewEncoder(w).Encode(map[string]any{"status": statusWord(st.OK), "role": "syncer", "sync": st.Public()})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

func statusWord(ok bool) string {
	if ok {
		return "ok"
	}
	return "degraded"
}
