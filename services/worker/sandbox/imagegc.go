package sandbox

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// pulledImages records the images this worker pulled for templates named
// by reference, with the orgs that pulled each (only they may start from
// it without pulling again) and when a sandbox last started from it, in
// <DataDir>/pulled-images.json: what image garbage collection may remove.
// Built-in template images and images pulled by hand are never in it.
type pulledImages struct {
	path string

	mu     sync.Mutex
	images map[string]*pulledImage
}

type pulledImage struct {
	LastUsed time.Time `json:"lastUsed"`
	Owners   []string  `json:"owners"` // org ids ("" is the org-less caller of combined mode)
}

func loadPulledImages(dataDir string) *pulledImages {
	p := &pulledImages{path: filepath.Join(dataDir, "pulled-images.json"), images: map[string]*pulledImage{}}
	b, err := os.ReadFile(p.path)
	if err != nil {
		return p
	}
	// A damaged record only forgets images: they stay on disk, and orgs
	// pull them again. A record of an older version (image -> last use)
	// has no owners: the same.
	if json.Unmarshal(b, &p.images) != nil {
		var old map[string]time.Time
		p.images = map[string]*pulledImage{}
		if json.Unmarshal(b, &old) == nil {
			for ref, t := range old {
				p.images[ref] = &pulledImage{LastUsed: t}
			}
		}
	}
	return p
}

// usedPrecision is how stale a recorded use may be: the record is written
// at most once a minute per image, not on every create (GC ages are hours).
const usedPrecision = time.Minute

// used records a sandbox starting from ref, if ref is a pulled image.
func (p *pulledImages) used(ref string, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	img, ok := p.images[ref]
	if !ok || at.Sub(img.LastUsed) < usedPrecision {
		return
	}
	img.LastUsed = at
	p.save()
}

// own records that org pulled ref (and may start from it from now on).
func (p *pulledImages) own(ref, org string, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	img, ok := p.images[ref]
	if !ok {
		img = &pulledImage{}
		p.images[ref] = img
	}
	if slices.Contains(img.Owners, org) && at.Sub(img.LastUsed) < usedPrecision {
		return
	}
	if !slices.Contains(img.Owners, org) {
		img.Owners = append(img.Owners, org)
	}
	img.LastUsed = at
	p.save()
}

// owns reports whether org pulled ref.
func (p *pulledImages) owns(ref, org string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	img, ok := p.images[ref]
	return ok && slices.Contains(img.Owners, org)
}

func (p *pulledImages) forget(ref string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.images[ref]; ok {
		delete(p.images, ref)
		p.save()
	}
}

// snapshot returns each pulled image's last use.
func (p *pulledImages) snapshot() map[string]time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]time.Time, len(p.images))
	for k, v := range p.images {
		out[k] = v.LastUsed
	}
	return out
}

// save writes the record atomically (a crash leaves the old or the new).
func (p *pulledImages) save() {
	b, _ := json.Marshal(p.images)
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
		if img, _, err := m.imageOf(sb.TemplateID); err == nil {
			inUse[img] = true
		}
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
