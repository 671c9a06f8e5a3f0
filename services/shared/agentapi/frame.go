package agentapi

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// Streams between worker and agent (process output, PTY, file watch) are
// sequences of frames: one type byte, a big-endian uint32 payload length,
// then the payload. Raw bytes travel as they are; control payloads are JSON.
const (
	FrameStart     byte = 's' // process started: JSON Started
	FrameStdout    byte = 'o' // process stdout bytes
	FrameStderr    byte = 'e' // process stderr bytes
	FrameExit      byte = 'x' // process or shell ended: JSON Exit
	FrameError     byte = '!' // the stream failed: JSON api.ErrorBody
	FrameKeepalive byte = 'k' // nothing happened for KeepaliveInterval; empty
	FrameData      byte = 'd' // terminal bytes, both directions
	FrameResize    byte = 'r' // terminal size, worker to agent: JSON Size
	FrameReady     byte = 'y' // a file watch is in place; empty
	FrameEvent     byte = 'w' // a file watch event: JSON api.WatchEvent
)

// MaxFramePayload bounds one frame; larger payloads are refused as corrupt.
const MaxFramePayload = 1 << 20

const frameHeader = 5

// WriteFrame writes one frame. Callers that send many small frames should
// pass a bufio.Writer and flush when the batch is done.
func WriteFrame(w io.Writer, typ byte, payload []byte) error {
	if len(payload) > MaxFramePayload {
		return fmt.Errorf("frame payload of %d bytes is over the limit", len(payload))
	}
	var hdr [frameHeader]byte
	hdr[0] = typ
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(payload)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	if len(payload) == 0 {
		return nil
	}
	_, err := w.Write(payload)
	return err
}

// FrameReader reads frames from a stream.
type FrameReader struct {
	r   *bufio.Reader
	buf []byte
}

// NewFrameReader returns a reader of the frames in r.
func NewFrameReader(r io.Reader) *FrameReader {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 64<<10)
	}
	return &FrameReader{r: br}
}

// Next returns the next frame. The payload is only valid until the next
// call. A stream that ends between frames returns io.EOF.
func (f *FrameReader) Next() (byte, []byte, error) {
	var hdr [frameHeader]byte
	if _, err := io.ReadFull(f.r, hdr[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			err = fmt.Errorf("frame header: %w", err)
		}
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > MaxFramePayload {
		return 0, nil, fmt.Errorf("frame payload of %d bytes is over the limit", n)
	}
	if cap(f.buf) < int(n) {
		f.buf = make([]byte, n)
	}
	p := f.buf[:n]
	if _, err := io.ReadFull(f.r, p); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, fmt.Errorf("frame payload: %w", err)
	}
	return hdr[0], p, nil
}
