// Package placement chooses a worker for a new sandbox: among the healthy
// workers of a region that are neither full nor draining, best of K random
// samples by load (current/capacity). Sampling instead of a global minimum keeps concurrent
// control planes from all piling onto the same least-loaded worker.
package placement

import (
	"math/rand/v2"
	"sync"

	"github.com/opensandbox/opensandbox/services/controlplane/internal/registry"
)

// DefaultK is the number of samples compared per decision.
const DefaultK = 3

// Picker makes placement decisions.
type Picker struct {
	k   int
	mu  sync.Mutex
	rng *rand.Rand
}

// New returns a picker comparing k samples (DefaultK when k <= 0); seed
// fixes the random sequence (tests, benchmarks).
func New(k int, seed uint64) *Picker {
	if k <= 0 {
		k = DefaultK
	}
	return &Picker{k: k, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// Pick returns the best of k random candidates that are neither full,
// draining (shutting down) nor in skip; false when none is left.
func (p *Picker) Pick(workers []registry.Worker, skip map[string]bool) (registry.Worker, bool) {
	cands := make([]registry.Worker, 0, len(workers))
	for _, w := range workers {
		if !w.Full() && !w.Draining && !skip[w.ID] {
			cands = append(cands, w)
		}
	}
	if len(cands) == 0 {
		return registry.Worker{}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	// A partial Fisher-Yates shuffle draws min(k, n) distinct samples.
	n := min(p.k, len(cands))
	best := -1
	for i := range n {
		j := i + p.rng.IntN(len(cands)-i)
		cands[i], cands[j] = cands[j], cands[i]
		if best < 0 || cands[i].Load() < cands[best].Load() {
			best = i
		}
	}
	return cands[best], true
}
