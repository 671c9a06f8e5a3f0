// Package ringbuf keeps the most recent output of a process or terminal in
// bounded memory and lets readers follow it live.
//
// A Buffer holds at most Max bytes. While nobody follows it, old bytes are
// dropped as new ones arrive (scrollback). A follower's unread bytes are
// never dropped: the writer waits for the slowest follower instead, so a
// connected client sees every byte in order and memory stays bounded.
// An observer is a follower the writer never waits for: once it falls more
// than Max bytes behind it is dropped, and its next read fails with
// ErrLagged.
package ringbuf

import (
	"context"
	"errors"
	"io"
	"sync"
)

// blockSize is the unit of allocation; dropping old output frees whole blocks.
const blockSize = 32 << 10

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("ringbuf: closed")

// ErrDetached is returned by Reader.Read after the reader was closed.
var ErrDetached = errors.New("ringbuf: reader closed")

// ErrLagged is returned by an observer's Read once it fell so far behind
// that bytes it had not read were dropped.
var ErrLagged = errors.New("ringbuf: reader fell behind and was dropped")

// Buffer is a bounded, followable byte log. Offsets count every byte ever
// written, so a reader's position survives the dropping of old bytes.
type Buffer struct {
	max int

	mu      sync.Mutex
	blocks  [][]byte // blocks[i] holds offsets base+i*blockSize onwards; all full but the last
	base    int64
	start   int64 // oldest readable offset
	end     int64 // offset after the newest byte
	closed  bool
	changed chan struct{} // closed (and replaced) on new data, Close, or a reader leaving
	readers map[*Reader]struct{}
	moved   chan struct{} // closed (and replaced) when a reader advances or leaves
}

// New returns a buffer that keeps the last max bytes.
func New(max int) *Buffer {
	if max <= 0 {
		max = blockSize
	}
	return &Buffer{max: max, changed: make(chan struct{}), moved: make(chan struct{}), readers: map[*Reader]struct{}{}}
}

// Write appends p. It blocks while appending would drop bytes a reader has
// not read yet, and fails with ErrClosed once the buffer is closed.
func (b *Buffer) Write(p []byte) (int, error) {
	written := 0
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(p) > 0 {
		if b.closed {
			return written, ErrClosed
		}
		room := b.max - int(b.end-b.slowest())
		if room <= 0 {
			moved := b.moved
			b.mu.Unlock()
			<-moved
			b.mu.Lock()
			continue
		}
		n := min(room, len(p))
		b.append(p[:n])
		p = p[n:]
		written += n
		b.trim()
		b.dropLagging()
		b.broadcast()
	}
	return written, nil
}

// Close ends the buffer: readers get io.EOF once they have read what is
// left, and a Write blocked on a slow reader returns ErrClosed.
func (b *Buffer) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.closed = true
	b.broadcast()
	b.wakeWriter()
}

// Len returns how many bytes are kept.
func (b *Buffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return int(b.end - b.start)
}

// Written returns how many bytes were ever written.
func (b *Buffer) Written() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.end
}

// slowest returns the smallest unread offset of any reader the writer
// waits for (observers excluded); b.mu held.
func (b *Buffer) slowest() int64 {
	s := b.end
	for r := range b.readers {
		if !r.observer {
			s = min(s, r.off)
		}
	}
	return s
}

// dropLagging detaches the observers whose unread bytes were trimmed; b.mu
// held. Their next Read fails with ErrLagged.
func (b *Buffer) dropLagging() {
	for r := range b.readers {
		if r.observer && r.off < b.start {
			r.lagged = true
			delete(b.readers, r)
		}
	}
}

func (b *Buffer) append(p []byte) {
	for len(p) > 0 {
		if len(b.blocks) == 0 || len(b.blocks[len(b.blocks)-1]) == blockSize {
			b.blocks = append(b.blocks, make([]byte, 0, blockSize))
		}
		last := &b.blocks[len(b.blocks)-1]
		n := min(blockSize-len(*last), len(p))
		*last = append(*last, p[:n]...)
		p = p[n:]
		b.end += int64(n)
	}
}

// trim forgets bytes beyond max and frees blocks nobody can read any more.
func (b *Buffer) trim() {
	b.start = max(b.start, b.end-int64(b.max))
	for len(b.blocks) > 0 && b.base+blockSize <= b.start {
		b.blocks[0] = nil
		b.blocks = b.blocks[1:]
		b.base += blockSize
	}
}

func (b *Buffer) broadcast() {
	close(b.changed)
	b.changed = make(chan struct{})
}

func (b *Buffer) wakeWriter() {
	close(b.moved)
	b.moved = make(chan struct{})
}

// readAt copies bytes from offset off into p; b.mu held, start <= off <= end.
func (b *Buffer) readAt(off int64, p []byte) int {
	n := 0
	for n < len(p) && off < b.end {
		i := off - b.base
		blk := b.blocks[i/blockSize]
		c := copy(p[n:], blk[i%blockSize:])
		n += c
		off += int64(c)
	}
	return n
}

// Reader follows a Buffer from a position. A follower's unread bytes are
// kept until it reads them or is closed; an observer's only while it is
// less than Max bytes behind.
type Reader struct {
	b        *Buffer
	off      int64
	closed   bool
	observer bool // the writer does not wait for it
	lagged   bool // an observer dropped for falling behind
}

// NewReader starts a follower at the oldest kept byte (replay) or at the
// end (live only). The writer waits for it.
func (b *Buffer) NewReader(replay bool) *Reader {
	return b.newReader(replay, false)
}

// NewObserver starts an observer, which the writer never waits for, at the
// oldest kept byte (replay) or at the end.
func (b *Buffer) NewObserver(replay bool) *Reader {
	return b.newReader(replay, true)
}

func (b *Buffer) newReader(replay, observer bool) *Reader {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := &Reader{b: b, off: b.end, observer: observer}
	if replay {
		r.off = b.start
	}
	b.readers[r] = struct{}{}
	return r
}

// Read copies unread bytes into p without blocking: (0, nil) means nothing
// new yet (wait on Wait), io.EOF that the buffer is closed and fully read.
func (r *Reader) Read(p []byte) (int, error) {
	b := r.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if r.closed {
		return 0, ErrDetached
	}
	if r.lagged {
		return 0, ErrLagged
	}
	if r.off < b.start { // cannot happen while registered; kept as a guard
		r.off = b.start
	}
	if r.off == b.end {
		if b.closed {
			return 0, io.EOF
		}
		return 0, nil
	}
	n := b.readAt(r.off, p)
	r.off += int64(n)
	b.wakeWriter()
	return n, nil
}

// Wait returns a channel that is closed when Read may have something new.
// Take it before calling Read so that no wake-up is missed.
func (r *Reader) Wait() <-chan struct{} {
	r.b.mu.Lock()
	defer r.b.mu.Unlock()
	return r.b.changed
}

// ReadContext blocks until there is something to read, the buffer ends,
// the reader is closed, or ctx is done.
func (r *Reader) ReadContext(ctx context.Context, p []byte) (int, error) {
	for {
		ch := r.Wait()
		n, err := r.Read(p)
		if n > 0 || err != nil {
			return n, err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// Close stops following: the writer no longer waits for this reader, and a
// ReadContext in progress returns ErrDetached.
func (r *Reader) Close() {
	b := r.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	delete(b.readers, r)
	b.wakeWriter()
	b.broadcast()
}
