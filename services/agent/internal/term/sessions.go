package term

import (
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/opensandbox/opensandbox/services/agent/internal/proc"
)

// Limits of the session table: ended sessions stay a while so that a client
// reconnecting after the shell exited still gets the scrollback and the
// exit code.
const (
	maxRunning = 64
	maxEnded   = 16
	keepEnded  = 5 * time.Minute
)

// ErrTooMany is returned when too many shells run at once.
var ErrTooMany = errors.New("too many terminal sessions")

// Sessions is the agent's table of terminal sessions.
type Sessions struct {
	reaper *proc.Reaper
	mu     sync.Mutex
	byID   map[string]*Session
}

// NewSessions returns an empty table that starts shells through reaper.
func NewSessions(reaper *proc.Reaper) *Sessions {
	return &Sessions{reaper: reaper, byID: map[string]*Session{}}
}

// Start starts a shell on a new terminal.
func (t *Sessions) Start(spec Spec) (*Session, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.gcLocked()
	if t.runningLocked() >= maxRunning {
		return nil, ErrTooMany
	}
	s, err := start(t.reaper, spec)
	if err != nil {
		return nil, err
	}
	t.byID[s.ID] = s
	return s, nil
}

// Get returns a session by id.
func (t *Sessions) Get(id string) (*Session, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.byID[id]
	return s, ok
}

// Remove kills a session's processes and forgets it.
func (t *Sessions) Remove(id string) bool {
	t.mu.Lock()
	s, ok := t.byID[id]
	delete(t.byID, id)
	t.mu.Unlock()
	if ok {
		s.Kill()
	}
	return ok
}

// List returns the sessions, oldest first.
func (t *Sessions) List() []*Session {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.gcLocked()
	out := make([]*Session, 0, len(t.byID))
	for _, s := range t.byID {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].StartedAt.Before(out[j].StartedAt) })
	return out
}

// Running counts the shells still running.
func (t *Sessions) Running() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.runningLocked()
}

func (t *Sessions) runningLocked() int {
	n := 0
	for _, s := range t.byID {
		if s.Running() {
			n++
		}
	}
	return n
}

func (t *Sessions) gcLocked() {
	var ended []*Session
	for id, s := range t.byID {
		if s.Running() {
			continue
		}
		if end := s.Info().EndedAt; end != nil && time.Since(*end) > keepEnded {
			delete(t.byID, id)
			continue
		}
		ended = append(ended, s)
	}
	if len(ended) <= maxEnded {
		return
	}
	sort.Slice(ended, func(i, j int) bool { return ended[i].Info().EndedAt.Before(*ended[j].Info().EndedAt) })
	for _, s := range ended[:len(ended)-maxEnded] {
		delete(t.byID, s.ID)
	}
}
