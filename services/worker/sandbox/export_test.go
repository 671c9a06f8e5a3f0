package sandbox

// Expire runs what a sandbox's end-of-life timer runs, so tests can drive a
// timer that fired but had to wait for the manager's lock.
func (m *Manager) Expire(id string) { m.expire(id) }
