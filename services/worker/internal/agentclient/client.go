// Package agentclient speaks the agent protocol (package agentapi) over the
// unix socket of one sandbox.
package agentclient

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"

	"github.com/opensandbox/opensandbox/services/shared/agentapi"
	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/shared/errs"
)

// Client talks to one sandbox's agent.
type Client struct {
	http *http.Client
}

// Close drops idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

func (c *Client) do(ctx context.Context, method, path string, q url.Values, body io.Reader, hdr http.Header) (*http.Response, error) {
	u := "http://agent" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, errs.Unavailable("agent_unreachable", "sandbox agent is not reachable").WithCause(err)
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		var eb api.ErrorBody
		json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&eb)
		return nil, errs.FromHTTP(resp.StatusCode, eb.Code, eb.Error)
	}
	return resp, nil
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

func (c *Client) doJSON(ctx context.Context, method, path string, q url.Values, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	resp, err := c.do(ctx, method, path, q, body, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	// A listing is the largest JSON answer; a hostile agent's endless one
	// must not grow the worker.
	lr := &io.LimitedReader{R: resp.Body, N: maxJSONAnswer + 1}
	if err := json.NewDecoder(lr).Decode(out); err != nil {
		if lr.N <= 0 {
			return fmt.Errorf("%w: answer over %d bytes", ErrMalformed, maxJSONAnswer)
		}
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return nil
}

// maxJSONAnswer bounds one JSON answer of the agent.
const maxJSONAnswer = 16 << 20

// Health asks the agent whether it is up.
func (c *Client) Health(ctx context.Context) (agentapi.Health, error) {
	var h agentapi.Health
	err := c.doJSON(ctx, http.MethodGet, "/health", nil, nil, &h)
	return h, err
}

// File is a streamed file body.
type File struct {
	Body         io.ReadCloser
	Size         int64  // -1 when unknown
	Partial      bool   // a 206 answer to a Range request
	ContentType  string // application/octet-stream, or multipart/byteranges for several ranges
	ContentRange string // set for a 206 answer with a single range
	Mode         string
}

// ReadFile opens a file for streaming; rangeHdr is an optional HTTP Range.
func (c *Client) ReadFile(ctx context.Context, path, rangeHdr string) (*File, error) {
	var hdr http.Header
	if rangeHdr != "" {
		hdr = http.Header{"Range": {rangeHdr}}
	}
	resp, err := c.do(ctx, http.MethodGet, "/files", url.Values{"path": {path}}, nil, hdr)
	if err != nil {
		return nil, err
	}
	return &File{
		Body: resp.Body, Size: resp.ContentLength, Partial: resp.StatusCode == http.StatusPartialContent,
		ContentType: resp.Header.Get("Content-Type"), ContentRange: resp.Header.Get("Content-Range"), Mode: resp.Header.Get("X-File-Mode"),
	}, nil
}

// WriteFile streams r into path; size may be -1.
func (c *Client) WriteFile(ctx context.Context, path string, mode string, r io.Reader, size int64) (api.EntryInfo, error) {
	q := url.Values{"path": {path}}
	if mode != "" {
		q.Set("mode", mode)
	}
	var e api.EntryInfo
	err := c.upload(ctx, http.MethodPut, "/files", q, r, size, nil, func(resp *http.Response) error {
		return json.NewDecoder(resp.Body).Decode(&e)
	})
	return e, err
}

// upload sends a request whose body streams from the caller's reader and
// returns only once the HTTP transport has let go of that reader: after an
// early error answer the transport may still be sending, and the caller
// must be able to read what is left (to drain a refused upload) without
// racing it.
func (c *Client) upload(ctx context.Context, method, path string, q url.Values, r io.Reader, size int64, hdr http.Header, handle func(*http.Response) error) error {
	ctx, cancel := context.WithCancel(ctx)
	body := &heldBody{r: r, released: make(chan struct{})}
	defer func() {
		cancel() // aborts a send still in progress, which releases the body
		<-body.released
	}()
	var reqBody io.Reader = body
	if size == 0 {
		reqBody = http.NoBody
		body.Close()
	}
	u := "http://agent" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, reqBody)
	if err != nil {
		body.Close()
		return err
	}
	req.ContentLength = size
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.http.Do(req) // the transport closes the body, even on errors
	if err != nil {
		return errs.Unavailable("agent_unreachable", "sandbox agent is not reachable").WithCause(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		var eb api.ErrorBody
		json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&eb)
		return errs.FromHTTP(resp.StatusCode, eb.Code, eb.Error)
	}
	return handle(resp)
}

// heldBody reports when the transport is done with a request body.
type heldBody struct {
	r        io.Reader
	once     sync.Once
	released chan struct{}
}

func (b *heldBody) Read(p []byte) (int, error) { return b.r.Read(p) }

func (b *heldBody) Close() error {
	b.once.Do(func() { close(b.released) })
	return nil
}

// List lists a directory to depth.
func (c *Client) List(ctx context.Context, path string, depth int) ([]api.EntryInfo, error) {
	var out []api.EntryInfo
	err := c.doJSON(ctx, http.MethodGet, "/files/list", url.Values{"path": {path}, "depth": {strconv.Itoa(depth)}}, nil, &out)
	return out, err
}

// Stat describes one path.
func (c *Client) Stat(ctx context.Context, path string) (api.EntryInfo, error) {
	var e api.EntryInfo
	err := c.doJSON(ctx, http.MethodGet, "/files/stat", url.Values{"path": {path}}, nil, &e)
	return e, err
}

// MakeDir creates path and its parents.
func (c *Client) MakeDir(ctx context.Context, path string) (api.EntryInfo, error) {
	var e api.EntryInfo
	err := c.doJSON(ctx, http.MethodPost, "/files/mkdir", url.Values{"path": {path}}, nil, &e)
	return e, err
}

// Remove deletes path recursively.
func (c *Client) Remove(ctx context.Context, path string) error {
	return c.doJSON(ctx, http.MethodDelete, "/files", url.Values{"path": {path}}, nil, nil)
}

// Rename moves from to to.
func (c *Client) Rename(ctx context.Context, from, to string) (api.EntryInfo, error) {
	var e api.EntryInfo
	err := c.doJSON(ctx, http.MethodPost, "/files/rename", nil, api.RenameRequest{From: from, To: to}, &e)
	return e, err
}
