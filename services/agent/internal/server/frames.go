package server

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"

	"github.com/opensandbox/opensandbox/services/shared/agentapi"
)

// frameStream is a streamed 200 answer made of agentapi frames. Frames are
// buffered and flushed when the producer has nothing more at hand, so a
// burst of output travels in few writes and a lone keystroke at once.
type frameStream struct {
	bw *bufio.Writer
	rc *http.ResponseController
	// poll is an already cancelled context: passed to a blocking read it
	// turns the read into a poll.
	poll context.Context
}

func startFrames(w http.ResponseWriter) *frameStream {
	w.Header().Set("Content-Type", "application/x-osb-frames")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	poll, cancel := context.WithCancel(context.Background())
	cancel()
	return &frameStream{bw: bufio.NewWriterSize(w, 64<<10), rc: http.NewResponseController(w), poll: poll}
}

func (f *frameStream) send(typ byte, payload []byte) error {
	return agentapi.WriteFrame(f.bw, typ, payload)
}

func (f *frameStream) sendJSON(typ byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return f.send(typ, b)
}

func (f *frameStream) flush() error {
	if err := f.bw.Flush(); err != nil {
		return err
	}
	return f.rc.Flush()
}

// keepalive sends a keepalive frame and flushes.
func (f *frameStream) keepalive() error {
	if err := f.send(agentapi.FrameKeepalive, nil); err != nil {
		return err
	}
	return f.flush()
}
