package agentclient

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/opensandbox/opensandbox/services/shared/agentapi"
	"github.com/opensandbox/opensandbox/services/shared/api"
)

// Stream is a frame stream answered by the agent (process output, file
// watch). Closing it hangs up, which the agent takes as the end of interest.
type Stream struct {
	body io.ReadCloser
	fr   *agentapi.FrameReader
}

func newStream(body io.ReadCloser) *Stream {
	return &Stream{body: body, fr: agentapi.NewFrameReader(body)}
}

// Next returns the next frame; the payload is valid until the next call.
func (s *Stream) Next() (byte, []byte, error) { return s.fr.Next() }

// Close hangs up.
func (s *Stream) Close() error { return s.body.Close() }

func (c *Client) stream(ctx context.Context, method, path string, q url.Values, in any) (*Stream, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytesReader(b)
	}
	resp, err := c.do(ctx, method, path, q, body, nil)
	if err != nil {
		return nil, err
	}
	return newStream(resp.Body), nil
}

// StartProcess starts a background process and returns its pid.
func (c *Client) StartProcess(ctx context.Context, req agentapi.StartRequest) (agentapi.Started, error) {
	req.Follow = false
	var st agentapi.Started
	err := c.doJSON(ctx, http.MethodPost, "/processes", nil, req, &st)
	return st, err
}

// FollowProcess starts a process and streams its frames: Start, output,
// Exit. Closing the stream before Exit kills the process.
func (c *Client) FollowProcess(ctx context.Context, req agentapi.StartRequest) (*Stream, error) {
	req.Follow = true
	return c.stream(ctx, http.MethodPost, "/processes", nil, req)
}

// Processes lists the managed processes.
func (c *Client) Processes(ctx context.Context) ([]api.ProcessInfo, error) {
	var out []api.ProcessInfo
	err := c.doJSON(ctx, http.MethodGet, "/processes", nil, nil, &out)
	return out, err
}

func pidPath(pid int, rest string) string { return "/processes/" + strconv.Itoa(pid) + rest }

// ProcessOutput streams what a process printed so far, then live output
// until its Exit frame.
func (c *Client) ProcessOutput(ctx context.Context, pid int) (*Stream, error) {
	return c.stream(ctx, http.MethodGet, pidPath(pid, "/stream"), nil, nil)
}

// WriteStdin streams r into a process's stdin.
func (c *Client) WriteStdin(ctx context.Context, pid int, r io.Reader) error {
	return c.upload(ctx, http.MethodPost, pidPath(pid, "/stdin"), nil, r, -1, http.Header{"Content-Type": {"application/octet-stream"}},
		func(*http.Response) error { return nil })
}

// CloseStdin closes a process's stdin.
func (c *Client) CloseStdin(ctx context.Context, pid int) error {
	return c.doJSON(ctx, http.MethodDelete, pidPath(pid, "/stdin"), nil, nil, nil)
}

// Signal sends a signal (name or number) to a process's group.
func (c *Client) Signal(ctx context.Context, pid int, sig string) error {
	return c.doJSON(ctx, http.MethodPost, pidPath(pid, "/signal"), nil, api.SignalRequest{Signal: sig}, nil)
}

// KillProcess sends SIGKILL to a process's group.
func (c *Client) KillProcess(ctx context.Context, pid int) error {
	return c.doJSON(ctx, http.MethodDelete, pidPath(pid, ""), nil, nil, nil)
}

// Watch streams file events under path: a Ready frame once the watch is in
// place, then Event frames. Closing the stream removes the watch.
func (c *Client) Watch(ctx context.Context, path string, recursive bool) (*Stream, error) {
	s, err := c.stream(ctx, http.MethodGet, "/files/watch", url.Values{"path": {path}, "recursive": {strconv.FormatBool(recursive)}}, nil)
	if err != nil {
		return nil, err
	}
	typ, _, err := s.Next()
	if err != nil || typ != agentapi.FrameReady {
		s.Close()
		return nil, fmt.Errorf("watch did not start (frame %q): %w", typ, err)
	}
	return s, nil
}
