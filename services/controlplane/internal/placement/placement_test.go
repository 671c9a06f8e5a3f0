package placement

import (
	"fmt"
	"testing"

	"github.com/opensandbox/opensandbox/services/controlplane/internal/registry"
)

func TestPick(t *testing.T) {
	p := New(3, 1)
	for _, tc := range []struct {
		name    string
		workers []registry.Worker
		skip    map[string]bool
		want    string
		ok      bool
	}{
		{"none", nil, nil, "", false},
		{"all full", []registry.Worker{{ID: "a", Capacity: 1, Current: 1}}, nil, "", false},
		{"skip the only one", []registry.Worker{{ID: "a", Capacity: 5}}, map[string]bool{"a": true}, "", false},
		{"the only free one", []registry.Worker{{ID: "a", Capacity: 1, Current: 1}, {ID: "b", Capacity: 9, Current: 8}}, nil, "b", true},
		// With three candidates all are sampled: the least loaded wins.
		{"least loaded of three", []registry.Worker{{ID: "a", Capacity: 10, Current: 5}, {ID: "b", Capacity: 100, Current: 10}, {ID: "c", Capacity: 10, Current: 9}}, nil, "b", true},
		// A draining worker (shutting down) gets nothing, however idle.
		{"draining never", []registry.Worker{{ID: "a", Capacity: 10, Draining: true}}, nil, "", false},
		{"draining skipped", []registry.Worker{{ID: "a", Capacity: 10, Draining: true}, {ID: "b", Capacity: 10, Current: 9}}, nil, "b", true},
		{"skip then next", []registry.Worker{{ID: "a", Capacity: 10}, {ID: "b", Capacity: 10, Current: 3}}, map[string]bool{"a": true}, "b", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, ok := p.Pick(tc.workers, tc.skip)
			if ok != tc.ok || w.ID != tc.want {
				t.Fatalf("got %q %v, want %q %v", w.ID, ok, tc.want, tc.ok)
			}
		})
	}
}

// Best of 3 over many workers lands on lightly loaded ones and never on the
// single most loaded one unless it is sampled alone.
func TestPickSpreadsLoad(t *testing.T) {
	p := New(3, 42)
	var workers []registry.Worker
	for i := range 20 {
		workers = append(workers, registry.Worker{ID: fmt.Sprint(i), Capacity: 100, Current: i * 5})
	}
	hits := map[string]int{}
	for range 10000 {
		w, _ := p.Pick(workers, nil)
		hits[w.ID]++
	}
	// The emptiest worker must be chosen far more than the fullest.
	if hits["0"] < 1000 || hits["19"] != 0 || hits["18"] != 0 {
		t.Fatalf("distribution %v", hits)
	}
}
