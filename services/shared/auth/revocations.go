package auth

import (
	"context"
	"sync"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/errs"
)

// Errors of tokens refused by their key's state.
var (
	ErrTokenRevoked = &errs.Error{Kind: errs.KindForbidden, Code: "token_revoked",
		Message: "the API key this sandbox token was issued for has been revoked"}
	ErrRevocationsStale = &errs.Error{Kind: errs.KindUnavailable, Code: "revocations_unavailable",
		Message: "this worker cannot confirm the token's API key is still valid (no revocation list from the control plane); retry shortly"}
)

// RevocationList is what the control plane announces (JSON on NATS
// natsx.KeysRevokedSubj): every API key revoked within MaxTokenLifetime,
// so that a worker that missed earlier lists, or just started, knows them
// all. Durations are relative to sending, so clocks need not agree.
type RevocationList struct {
	Keys []RevokedKey `json:"keys"`
	// ValidForMs is how long the receiver may trust the list: a worker
	// without a newer one by then refuses keyed tokens (fail closed).
	ValidForMs int64 `json:"validForMs"`
}

// RevokedKey is one revoked key and how long tokens minted for it may
// still be presented (then it can be forgotten).
type RevokedKey struct {
	ID          string `json:"id"`
	RememberSec int64  `json:"rememberSec"`
}

// Revocations is a worker's view of revoked API keys. A token minted for a
// key in it is refused, and the connections such tokens opened end. The
// view is fresh for a while after each list (RevocationList.ValidForMs);
// while it is not — before the first list, or when lists stop coming —
// tokens minted for any key are refused and their connections end too, so
// a revocation takes effect within that time whatever happens to the
// control plane or NATS. Tokens of the static key (no key id) are never
// affected.
type Revocations struct {
	now func() time.Time

	mu         sync.Mutex
	revoked    map[string]time.Time     // key id -> forget after
	live       map[string]chan struct{} // key id -> closed to end its connections
	freshUntil time.Time                // zero: never had a list
	staleTimer *time.Timer              // ends every keyed connection at freshUntil
	onStale    func()                   // observes the view going stale
	lastList   time.Time
}

// NewRevocations returns an empty view: not fresh until the first list.
// onStale, when set, is called (without locks held) each time the view
// turns stale.
func NewRevocations(onStale func()) *Revocations {
	return &Revocations{now: time.Now, revoked: map[string]time.Time{}, live: map[string]chan struct{}{}, onStale: onStale}
}

// Apply takes in a list: its keys join the revoked set (lists only add;
// a key is forgotten once its tokens have expired), their connections end,
// and the view is fresh for the list's validity.
func (r *Revocations) Apply(l RevocationList) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastList = now
	for id, until := range r.revoked {
		if now.After(until) {
			delete(r.revoked, id)
		}
	}
	for _, k := range l.Keys {
		if k.ID == "" {
			continue
		}
		until := now.Add(time.Duration(k.RememberSec) * time.Second)
		if until.After(r.revoked[k.ID]) {
			r.revoked[k.ID] = until
		}
		if ch, ok := r.live[k.ID]; ok {
			close(ch)
			delete(r.live, k.ID)
		}
	}
	valid := time.Duration(l.ValidForMs) * time.Millisecond
	if valid <= 0 {
		return
	}
	r.freshUntil = now.Add(valid)
	if r.staleTimer == nil {
		r.staleTimer = time.AfterFunc(valid, r.expire)
	} else {
		r.staleTimer.Reset(valid)
	}
}

// expire runs when the freshness of the last list ran out (unless a newer
// list came meanwhile): every keyed connection ends.
func (r *Revocations) expire() {
	r.mu.Lock()
	if r.now().Before(r.freshUntil) {
		r.mu.Unlock()
		return
	}
	for id, ch := range r.live {
		close(ch)
		delete(r.live, id)
	}
	onStale := r.onStale
	r.mu.Unlock()
	if onStale != nil {
		onStale()
	}
}

// Fresh reports whether the view may be trusted now.
func (r *Revocations) Fresh() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.now().Before(r.freshUntil)
}

// Age is the time since the last list (-1 before the first).
func (r *Revocations) Age() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lastList.IsZero() {
		return -1
	}
	return r.now().Sub(r.lastList)
}

// Revoked is the number of keys in the view.
func (r *Revocations) Revoked() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.revoked)
}

// Check refuses a token minted for keyID when that key is revoked
// (ErrTokenRevoked) or the view is not fresh (ErrRevocationsStale). A
// token without a key id (the static key) always passes.
func (r *Revocations) Check(keyID string) error {
	if keyID == "" {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if until, ok := r.revoked[keyID]; ok && now.Before(until) {
		return ErrTokenRevoked
	}
	if !now.Before(r.freshUntil) {
		return ErrRevocationsStale
	}
	return nil
}

// Bind returns a context for a request authenticated by keyID that also
// ends when that key is revoked or the view turns stale, so streams,
// watches and terminals it opened close. parent is the request's context
// (Fiber's is not cancellable, which costs nothing here).
func (r *Revocations) Bind(parent context.Context, keyID string) context.Context {
	if keyID == "" {
		return parent
	}
	r.mu.Lock()
	ch, ok := r.live[keyID]
	if !ok {
		ch = make(chan struct{})
		r.live[keyID] = ch
	}
	r.mu.Unlock()
	if parent.Done() == nil {
		return &keyContext{Context: parent, done: ch}
	}
	ctx, cancel := context.WithCancelCause(parent)
	go func() {
		select {
		case <-ch:
			cancel(ErrTokenRevoked)
		case <-ctx.Done():
		}
	}()
	return ctx
}

// Explain turns the failure of a request whose context Bind ended (its key
// was revoked while it ran, or the view went stale) into that reason, so
// the caller sees 403 token_revoked rather than a cancelled request.
// A nil Revocations, or a request that did not end that way, keeps err.
func (r *Revocations) Explain(ctx context.Context, keyID string, err error) error {
	if r == nil || err == nil || keyID == "" || ctx.Err() == nil {
		return err
	}
	if cerr := r.Check(keyID); cerr != nil {
		return cerr
	}
	return err
}

// keyContext is a context that ends when done is closed; its parent is
// never cancelled, so no goroutine needs to wait for both.
type keyContext struct {
	context.Context
	done <-chan struct{}
}

func (k *keyContext) Done() <-chan struct{} { return k.done }

func (k *keyContext) Err() error {
	select {
	case <-k.done:
		return context.Canceled
	default:
		return nil
	}
}
