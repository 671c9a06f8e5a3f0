package registry

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/proto/workerv1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestStaleWorkersAreDropped(t *testing.T) {
	now := time.Unix(1000, 0)
	var dropped []string
	m := NewMetrics(prometheus.NewRegistry())
	r := New(slog.New(slog.NewTextHandler(io.Discard, nil)), Config{
		StaleAfter: 15 * time.Second,
		OnDrop:     func(w Worker) { dropped = append(dropped, w.ID) },
	}, m)
	r.now = func() time.Time { return now }
	beat := func(id, region string, current int32) {
		r.Observe(&workerv1.Heartbeat{WorkerId: id, Region: region, GrpcAddr: id + ":9090", HttpAddr: "http://" + id, Capacity: 10, Current: current})
	}
	beat("a", "eu", 1)
	beat("b", "eu", 2)
	beat("c", "us", 3)
	r.Observe(&workerv1.Heartbeat{}) // no id: ignored
	if len(r.List()) != 3 || len(r.Region("eu")) != 2 || testutil.ToFloat64(m.Beats) != 3 {
		t.Fatalf("list %v, beats %v", r.List(), testutil.ToFloat64(m.Beats))
	}
	if testutil.ToFloat64(m.Workers.WithLabelValues("eu")) != 2 {
		t.Fatal("registry size gauge")
	}
	// Placements count until the next beat says otherwise.
	r.Placed("a")
	r.Placed("a")
	if w, _ := r.Get("a"); w.Current != 3 || w.Load() != 0.3 {
		t.Fatalf("after placements %+v", w)
	}
	r.MarkFull("b")
	if w, _ := r.Get("b"); !w.Full() {
		t.Fatalf("marked full %+v", w)
	}
	now = now.Add(10 * time.Second)
	beat("a", "eu", 1)
	if w, _ := r.Get("a"); w.Current != 1 {
		t.Fatalf("beat did not reset the count: %+v", w)
	}
	now = now.Add(6 * time.Second) // b and c: 16 s without a beat
	gone := r.Sweep()
	if len(gone) != 2 || len(dropped) != 2 || len(r.List()) != 1 {
		t.Fatalf("swept %v, dropped %v, left %v", gone, dropped, r.List())
	}
	if _, ok := r.Get("b"); ok {
		t.Fatal("stale worker still listed")
	}
	if testutil.ToFloat64(m.Lost) != 2 || testutil.ToFloat64(m.HeartbeatAge.WithLabelValues("a")) != 6 {
		t.Fatalf("lost %v age %v", testutil.ToFloat64(m.Lost), testutil.ToFloat64(m.HeartbeatAge.WithLabelValues("a")))
	}
	// A dropped worker that beats again is back.
	beat("b", "eu", 0)
	if _, ok := r.Get("b"); !ok {
		t.Fatal("worker not back after a beat")
	}
}
