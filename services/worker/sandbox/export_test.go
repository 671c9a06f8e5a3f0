package sandbox

import (
	"context"
	"net/netip"
)

// Expire runs what a sandbox's end-of-life timer runs, so tests can drive a
// timer that fired but had to wait for the manager's lock.
func (m *Manager) Expire(id string) { m.expire(id) }

// SetImageLookup replaces how registry hosts are resolved (the check that
// refuses private addresses).
func (m *Manager) SetImageLookup(f func(ctx context.Context, host string) ([]netip.Addr, error)) {
	m.images.lookup = f
}

// SetRegistrySize replaces the size check made before a pull.
func (m *Manager) SetRegistrySize(f func(ctx context.Context, ref string, insecure bool) (int64, error)) {
	m.images.registrySize = f
}
