package opensandbox

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// streamEvent is one event of an SSE answer (docs/api.md, "Streams").
type streamEvent struct {
	Type     string `json:"type"`
	PID      int    `json:"pid,omitempty"`
	Data     []byte `json:"data,omitempty"` // base64 on the wire
	ExitCode *int   `json:"exitCode,omitempty"`
	TimedOut bool   `json:"timedOut,omitempty"`
	Error    string `json:"error,omitempty"`
	Code     string `json:"code,omitempty"`
	Path     string `json:"path,omitempty"`
	IsDir    bool   `json:"isDir,omitempty"`
}

// sseReader reads the data payloads of a text/event-stream, one event at a time.
type sseReader struct {
	r    *bufio.Reader
	data bytes.Buffer
}

func newSSEReader(r io.Reader) *sseReader {
	return &sseReader{r: bufio.NewReaderSize(r, 64<<10)}
}

// next returns the data of the next event; comments and fields other than
// data are skipped. io.EOF means the stream ended between events.
func (s *sseReader) next() ([]byte, error) {
	s.data.Reset()
	seen := false
	for {
		line, err := s.r.ReadBytes('\n')
		if len(line) > 0 {
			line = bytes.TrimRight(line, "\r\n")
			switch {
			case len(line) == 0: // blank line: end of an event
				if seen {
					return s.data.Bytes(), nil
				}
			case line[0] == ':': // comment, e.g. keepalive
			default:
				field, value, _ := bytes.Cut(line, []byte(":"))
				if string(field) == "data" {
					if seen {
						s.data.WriteByte('\n')
					}
					s.data.Write(bytes.TrimPrefix(value, []byte(" ")))
					seen = true
				}
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) && seen {
				return s.data.Bytes(), nil
			}
			return nil, err
		}
	}
}

// nextEvent decodes the next event.
func (s *sseReader) nextEvent() (streamEvent, error) {
	var ev streamEvent
	data, err := s.next()
	if err != nil {
		return ev, err
	}
	if err := json.Unmarshal(data, &ev); err != nil {
		return ev, fmt.Errorf("bad event %q: %w", truncate(data, 80), err)
	}
	return ev, nil
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

// streamError turns an "error" event into an *Error.
func streamError(op string, ev streamEvent) *Error {
	code := ev.Code
	if code == "" {
		code = CodeStream
	}
	msg := ev.Error
	if msg == "" {
		msg = "the stream failed"
	}
	return &Error{Op: op, Code: code, Message: msg}
}
