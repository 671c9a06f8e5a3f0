package opensandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// DefaultAPIURL is used when neither WithAPIURL nor OPENSANDBOX_API_URL is set.
const DefaultAPIURL = "http://localhost:8080"

// Version is sent in the User-Agent header.
const Version = "0.1.0"

// Client talks to an OpenSandbox server (combined mode or control plane).
// It is safe for concurrent use.
type Client struct {
	apiURL string
	apiKey string
	http   *http.Client
	// tokenMargin is how long before its expiry a sandbox token is refreshed.
	tokenMargin time.Duration
	now         func() time.Time // the clock of token expiry; tests replace it
}

// Option configures a Client.
type Option func(*Client)

// WithAPIURL sets the server's address, e.g. "http://localhost:8080".
func WithAPIURL(u string) Option { return func(c *Client) { c.apiURL = u } }

// WithAPIKey sets the API key sent as X-API-Key on lifecycle calls.
func WithAPIKey(k string) Option { return func(c *Client) { c.apiKey = k } }

// WithHTTPClient replaces the HTTP client. Its Timeout should stay 0: streams
// and large transfers last long; bound calls with their context instead.
func WithHTTPClient(h *http.Client) Option { return func(c *Client) { c.http = h } }

// WithTokenRefreshMargin sets how long before expiry a sandbox token is
// renewed (default one minute, never more than a quarter of its lifetime).
func WithTokenRefreshMargin(d time.Duration) Option { return func(c *Client) { c.tokenMargin = d } }

// NewClient returns a client configured from OPENSANDBOX_API_URL and
// OPENSANDBOX_API_KEY, then from opts.
func NewClient(opts ...Option) *Client {
	c := &Client{
		apiURL:      os.Getenv("OPENSANDBOX_API_URL"),
		apiKey:      os.Getenv("OPENSANDBOX_API_KEY"),
		http:        &http.Client{},
		tokenMargin: time.Minute,
		now:         time.Now,
	}
	if c.apiURL == "" {
		c.apiURL = DefaultAPIURL
	}
	for _, o := range opts {
		o(c)
	}
	c.apiURL = strings.TrimRight(c.apiURL, "/")
	return c
}

// APIURL returns the server address the client uses.
func (c *Client) APIURL() string { return c.apiURL }

// Create starts a new sandbox. Kill it when done: defer sbx.Kill(ctx).
func (c *Client) Create(ctx context.Context, opts CreateOptions) (*Sandbox, error) {
	req := createRequest{
		TemplateID:     opts.Template,
		Alias:          opts.Alias,
		Metadata:       opts.Metadata,
		Timeout:        seconds(opts.Timeout),
		CPUCount:       opts.CPUCount,
		MemoryMB:       opts.MemoryMB,
		DiskMB:         opts.DiskMB,
		Envs:           opts.Envs,
		NetworkEnabled: opts.NetworkEnabled,
		Region:         opts.Region,
		StrictRegion:   opts.StrictRegion,
	}
	var info SandboxInfo
	if err := c.doJSON(ctx, c.lifecycle(), http.MethodPost, "/sandboxes", nil, req, &info); err != nil {
		return nil, err
	}
	return newSandbox(c, info), nil
}

// Connect returns a handle on an existing sandbox.
func (c *Client) Connect(ctx context.Context, id string) (*Sandbox, error) {
	if id == "" {
		return nil, &Error{Op: "connect", Code: CodeInvalidArgument, Message: "sandbox id is empty"}
	}
	var info SandboxInfo
	if err := c.doJSON(ctx, c.lifecycle(), http.MethodGet, "/sandboxes/"+url.PathEscape(id), nil, nil, &info); err != nil {
		return nil, err
	}
	s := newSandbox(c, info)
	if info.ConnectURL != "" && info.Token == "" {
		// The sandbox lives behind a worker: get a token for its data path.
		if err := s.refreshToken(ctx, ""); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// List returns the sandboxes the API key can see.
func (c *Client) List(ctx context.Context) ([]SandboxInfo, error) {
	var out []SandboxInfo
	if err := c.doJSON(ctx, c.lifecycle(), http.MethodGet, "/sandboxes", nil, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// endpoint is where a call goes and how it authenticates.
type endpoint struct {
	base   string // scheme://host[:port][/prefix], no trailing slash
	apiKey string // sent as X-API-Key (lifecycle, or data path in combined mode)
	token  string // sent as Authorization: Bearer (worker data path)
}

func (c *Client) lifecycle() endpoint { return endpoint{base: c.apiURL, apiKey: c.apiKey} }

func (e endpoint) authorize(h http.Header) {
	if e.token != "" {
		h.Set("Authorization", "Bearer "+e.token)
	} else if e.apiKey != "" {
		h.Set("X-API-Key", e.apiKey)
	}
}

// credential is what a WebSocket offers as its bearer.<credential> subprotocol.
func (e endpoint) credential() string {
	if e.token != "" {
		return e.token
	}
	return e.apiKey
}

// request is one HTTP call.
type request struct {
	method string
	path   string
	query  url.Values
	body   io.Reader
	length int64 // of body; -1 unknown
	// replay, when set, gives a fresh copy of body so the call can be retried.
	replay func() io.Reader
	header http.Header
}

func (r request) op() string { return r.method + " " + r.path }

// send performs r against ep and returns a 2xx answer; anything else becomes an *Error.
func (c *Client) send(ctx context.Context, ep endpoint, r request) (*http.Response, error) {
	u := ep.base + r.path
	if len(r.query) > 0 {
		u += "?" + r.query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u, r.body)
	if err != nil {
		return nil, &Error{Op: r.op(), Code: CodeInvalidArgument, Message: err.Error(), Err: err}
	}
	if r.body != nil && r.length >= 0 {
		req.ContentLength = r.length
		if r.length == 0 {
			req.Body = http.NoBody
		}
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", "opensandbox-go/"+Version)
	ep.authorize(req.Header)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, transportError(r.op(), err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, errorFromResponse(r.op(), resp)
	}
	return resp, nil
}

// doJSON sends in (if not nil) as JSON and decodes the answer into out (if not nil).
func (c *Client) doJSON(ctx context.Context, ep endpoint, method, path string, query url.Values, in, out any) error {
	r, err := jsonRequest(method, path, query, in)
	if err != nil {
		return err
	}
	resp, err := c.send(ctx, ep, r)
	if err != nil {
		return err
	}
	return decodeJSON(r.op(), resp, out)
}

func jsonRequest(method, path string, query url.Values, in any) (request, error) {
	r := request{method: method, path: path, query: query, length: -1, header: http.Header{}}
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return r, &Error{Op: r.op(), Code: CodeInvalidArgument, Message: err.Error(), Err: err}
		}
		r.body, r.length = bytes.NewReader(b), int64(len(b))
		r.replay = func() io.Reader { return bytes.NewReader(b) }
		r.header.Set("Content-Type", "application/json")
	}
	r.header.Set("Accept", "application/json")
	return r, nil
}

func decodeJSON(op string, resp *http.Response, out any) error {
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return &Error{Op: op, Status: resp.StatusCode, Code: CodeUnexpectedAnswer,
			Message: fmt.Sprintf("cannot decode answer: %v", err), Err: err}
	}
	return nil
}

// seconds rounds d up to whole seconds; 0 stays 0 (server default).
func seconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int((d + time.Second - 1) / time.Second)
}
