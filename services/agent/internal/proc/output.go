package proc

import (
	"context"
	"sync"
)

// The output of commands run to completion is held by the agent until the
// command ends, inside the sandbox's memory limit. Held without bound it was
// the largest process in the sandbox and the kernel's OOM killer took it,
// and the sandbox with it (16 commands × 20 MB of output in 512 MB). So all
// commands together hold at most a Budget: each command's first
// FreeOutput bytes per stream are always kept, and a command that prints
// more first reserves room for its whole cap. A command waiting for room
// stops being read, so it blocks on its full pipe until another command's
// answer has been sent. Holders never wait, so the wait always ends.

// FreeOutput is what a command may hold per stream without a reservation.
const FreeOutput = 64 << 10

// chunkSize is the unit output is held in: no buffer is ever copied to grow.
const chunkSize = 32 << 10

// Budget bounds the output bytes held by all commands at once.
type Budget struct {
	mu    sync.Mutex
	free  int64
	total int64
	wake  chan struct{} // closed and replaced when room is returned
}

// NewBudget returns a budget of total bytes.
func NewBudget(total int64) *Budget {
	return &Budget{free: total, total: total, wake: make(chan struct{})}
}

// reserve takes n bytes (at most the whole budget), waiting for room until
// ctx ends.
func (b *Budget) reserve(ctx context.Context, n int64) (int64, error) {
	n = min(n, b.total)
	for {
		b.mu.Lock()
		if b.free >= n {
			b.free -= n
			b.mu.Unlock()
			return n, nil
		}
		wake := b.wake
		b.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

func (b *Budget) release(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.free += n
	close(b.wake)
	b.wake = make(chan struct{})
	b.mu.Unlock()
}

// Free returns the bytes not reserved now (for health and tests).
func (b *Budget) Free() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.free
}

// held is the output of one command: both streams share one reservation.
type held struct {
	budget   *Budget
	ctx      context.Context // ends the wait for room
	max      int             // cap per stream
	mu       sync.Mutex
	reserved int64
}

// grow makes room for a stream to hold more than FreeOutput bytes; false
// when ctx ended first.
func (h *held) grow() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.reserved > 0 || h.budget == nil {
		return true
	}
	n, err := h.budget.reserve(h.ctx, 2*int64(h.max))
	h.reserved = n
	return err == nil
}

// Release returns the reservation once the output has been sent.
func (h *held) Release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.budget != nil {
		h.budget.release(h.reserved)
	}
	h.reserved = 0
}

// Output is one captured stream: the first max bytes in fixed-size chunks,
// the rest counted as truncated but still consumed so the writer never
// blocks on it. When no room could be reserved before the command's
// deadline, what was kept stays and the rest counts as truncated.
type Output struct {
	h         *held
	chunks    [][]byte
	n         int
	truncated bool
	full      bool // no room could be had: keep nothing more
}

func (o *Output) Write(p []byte) (int, error) {
	written := len(p)
	if o.full {
		o.truncated = o.truncated || len(p) > 0
		return written, nil
	}
	room := o.h.max - o.n
	if room < len(p) {
		o.truncated = true
		p = p[:max(room, 0)]
	}
	if len(p) > 0 && o.n+len(p) > FreeOutput && !o.h.grow() {
		o.truncated, o.full = true, true
		return written, nil
	}
	for len(p) > 0 {
		last := len(o.chunks) - 1
		if last < 0 || len(o.chunks[last]) == cap(o.chunks[last]) {
			o.chunks = append(o.chunks, make([]byte, 0, chunkSize))
			last++
		}
		c := o.chunks[last]
		k := min(len(p), cap(c)-len(c))
		o.chunks[last] = append(c, p[:k]...)
		o.n += k
		p = p[k:]
	}
	return written, nil
}

// Len is the number of bytes kept.
func (o *Output) Len() int { return o.n }

// Truncated reports whether output past the cap was dropped.
func (o *Output) Truncated() bool { return o.truncated }

// Chunks returns the kept bytes in order.
func (o *Output) Chunks() [][]byte { return o.chunks }

// Bytes returns the kept bytes as one slice (a copy when there are several chunks).
func (o *Output) Bytes() []byte {
	if len(o.chunks) == 1 {
		return o.chunks[0]
	}
	out := make([]byte, 0, o.n)
	for _, c := range o.chunks {
		out = append(out, c...)
	}
	return out
}
