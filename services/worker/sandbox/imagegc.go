package sandbox

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// pulledImages records the images this worker pulled for templates named
// by reference, with when a sandbox last started from each, in
// <DataDir>/pulled-images.json: what image garbage collection may remove.
// Built-in template images and images pulled by hand are never in it.
type pulledImages struct {
	path string

	mu       sync.Mutex
	lastUsed map[string]time.Time
}

func loadPulledImages(dataDir string) *pulledImages {
	p := &pulledImages{path: filepath.Join(dataDir, "pulled-images.json"), lastUsed: map[string]time.Time{}}
	if b, err := os.ReadFile(p.path); err == nil {
		json.Unmarshal(b, &p.lastUsed) // a damaged record only forgets images: they stay on disk
	}
	return p
}

// usedPrecision is how stale a recorded use may be: the record is written
// at most once a minute per image, not on every create (GC ages are hours).
const usedPrecision = time.Minute

// used records a sandbox starting from ref.
func (p *pulledImages) used(ref string, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if last, ok := p.lastUsed[ref]; ok && at.Sub(last) < usedPrecision {
		return
	}
	p.lastUsed[ref] = at
	p.save()
}

func (p *pulledImages) forget(ref string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.lastUsed, ref)
	p.save()
}

func (p *pulledImages) snapshot() map[string]time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]time.Time, len(p.lastUsed))
	for k, v := range p.lastUsed {
		out[k] = v
	}
	return out
}

// save writes the record atomically (a crash leaves the old or the new).
func (p *pulledImages) save() {
	b, _ := json.Marshal(p.lastUsed)
	tmp := p.path + ".tmp"
	if os.WriteFile(tmp, b, 0o600) == nil {
		os.Rename(tmp, p.path)
	}
}

// imageGCEvery is how often unused pulled images are looked for: often
// enough for a short ImageGCAfter, at most every ten minutes.
func (c Config) imageGCEvery() time.Duration {
	return min(10*time.Minute, max(c.ImageGCAfter/2, time.Second))
}

// CollectImages removes the pulled images no live sandbox uses and none
// started from for Config.ImageGCAfter, and returns them. No create runs
// while an image is removed, so none starts from an image that goes.
func (m *Manager) CollectImages(ctx context.Context) []string {
	if m.cfg.ImageGCAfter <= 0 {
		return nil
	}
	inUse := map[string]bool{}
	for _, sb := range m.List(ctx, "") {
		inUse[sb.TemplateID] = true
	}
	now := time.Now()
	var removed []string
	for ref, last := range m.pulled.snapshot() {
		if inUse[ref] {
			m.pulled.used(ref, now)
			continue
		}
		if now.Sub(last) < m.cfg.ImageGCAfter {
			continue
		}
		// Not while a create runs (one may be pulling for minutes): this
		// image waits for the next round, and creates never wait for GC.
		if !m.imageMu.TryLock() {
			continue
		}
		err := m.rt.RemoveImage(ctx, ref)
		m.imageMu.Unlock()
		if err != nil {
			m.log.Warn("remove unused image; will retry", "image", ref, "err", err)
			continue
		}
		m.pulled.forget(ref)
		m.metrics.ImagesRemoved.Inc()
		m.log.Info("removed unused image", "image", ref, "unused_for", now.Sub(last).Round(time.Second).String())
		removed = append(removed, ref)
	}
	return removed
}
