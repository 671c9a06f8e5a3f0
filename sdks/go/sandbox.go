package opensandbox

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Sandbox is a handle on one sandbox. Lifecycle calls (Info, Kill, SetTimeout)
// go to the API URL with the API key; data-path calls (Commands, Files, PTY)
// go to the sandbox's connectURL with its token when the server handed them
// out, else to the API URL. It is safe for concurrent use.
type Sandbox struct {
	client *Client
	id     string

	mu   sync.Mutex // guards info and the data-path credentials below; never held across I/O
	info SandboxInfo

	connectURL string
	token      string
	expiresAt  time.Time // zero: does not expire
	issuedAt   time.Time
	refreshing *refreshCall // the token request in flight, if any
}

// refreshCall is one token request that concurrent callers share.
type refreshCall struct {
	done chan struct{} // closed when err is set
	err  error
}

func newSandbox(c *Client, info SandboxInfo) *Sandbox {
	s := &Sandbox{client: c, id: info.SandboxID}
	s.setInfo(info)
	s.setToken(tokenAnswer{Token: info.Token, TokenExpiresAt: info.TokenExpiresAt, ConnectURL: info.ConnectURL})
	return s
}

// ID returns the sandbox's id.
func (s *Sandbox) ID() string { return s.id }

// Cached returns what the last Create, Connect or Info call said about the sandbox.
func (s *Sandbox) Cached() SandboxInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.info
}

func (s *Sandbox) setInfo(info SandboxInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	info.Token = "" // kept apart, refreshed on its own
	s.info = info
}

func (s *Sandbox) path(rest string) string { return "/sandboxes/" + url.PathEscape(s.id) + rest }

// Info fetches the sandbox's current state.
func (s *Sandbox) Info(ctx context.Context) (*SandboxInfo, error) {
	var info SandboxInfo
	if err := s.client.doJSON(ctx, s.client.lifecycle(), http.MethodGet, s.path(""), nil, nil, &info); err != nil {
		return nil, err
	}
	s.setInfo(info)
	return &info, nil
}

// IsRunning reports whether the sandbox exists and runs. A sandbox that is
// gone answers false and no error.
func (s *Sandbox) IsRunning(ctx context.Context) (bool, error) {
	info, err := s.Info(ctx)
	if errors.Is(err, ErrSandboxGone) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return info.Status == StatusRunning, nil
}

// Kill destroys the sandbox and reports whether it did: a sandbox that is
// already gone (killed, timed out, never existed) answers false and no error,
// as in the Python and TypeScript SDKs.
func (s *Sandbox) Kill(ctx context.Context) (bool, error) {
	err := s.client.doJSON(ctx, s.client.lifecycle(), http.MethodDelete, s.path(""), nil, nil, nil)
	if errors.Is(err, ErrSandboxGone) {
		return false, nil
	}
	return err == nil, err
}

// SetTimeout makes the sandbox end d from now. The server counts whole
// seconds: d is rounded up (400ms becomes 1s); d <= 0 is an invalid argument.
func (s *Sandbox) SetTimeout(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return &Error{Op: "set timeout", Code: CodeInvalidArgument, Message: "timeout must be positive"}
	}
	body := struct {
		Timeout int `json:"timeout"`
	}{seconds(d)}
	return s.client.doJSON(ctx, s.client.lifecycle(), http.MethodPost, s.path("/timeout"), nil, body, nil)
}

// Commands returns the handle for running commands and processes.
func (s *Sandbox) Commands() *Commands { return &Commands{sbx: s} }

// Files returns the handle for the sandbox's file system.
func (s *Sandbox) Files() *Files { return &Files{sbx: s} }

// PTY returns the handle for interactive terminals.
func (s *Sandbox) PTY() *PTY { return &PTY{sbx: s} }

// ---- data path and its token ----

func (s *Sandbox) setToken(t tokenAnswer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setTokenLocked(t)
}

func (s *Sandbox) setTokenLocked(t tokenAnswer) {
	if t.Token == "" {
		return
	}
	s.token = t.Token
	if t.ConnectURL != "" {
		s.connectURL = strings.TrimRight(t.ConnectURL, "/")
	}
	s.expiresAt = time.Time{}
	if t.TokenExpiresAt != nil {
		s.expiresAt = *t.TokenExpiresAt
	}
	s.issuedAt = s.client.now()
}

// refreshToken asks the control plane for a fresh data-path token to
// replace stale ("" when there is none yet). Concurrent callers share one
// request, and s.mu is not held while it runs. A caller that finds the token
// already replaced returns at once.
func (s *Sandbox) refreshToken(ctx context.Context, stale string) error {
	for {
		s.mu.Lock()
		if s.token != stale {
			s.mu.Unlock()
			return nil
		}
		call := s.refreshing
		if call == nil {
			call = &refreshCall{done: make(chan struct{})}
			s.refreshing = call
			s.mu.Unlock()
			t, err := s.fetchToken(ctx)
			s.mu.Lock()
			if err == nil {
				s.setTokenLocked(t)
			}
			s.refreshing = nil
			s.mu.Unlock()
			call.err = err
			close(call.done)
			return err
		}
		s.mu.Unlock()
		select {
		case <-call.done:
			if call.err == nil {
				return nil
			}
			if isContextError(call.err) && ctx.Err() == nil {
				continue // the caller that asked gave up; this one still wants a token
			}
			return call.err
		case <-ctx.Done():
			return transportError("refresh token", ctx.Err())
		}
	}
}

func isContextError(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// fetchToken performs the token request.
func (s *Sandbox) fetchToken(ctx context.Context) (tokenAnswer, error) {
	var t tokenAnswer
	if err := s.client.doJSON(ctx, s.client.lifecycle(), http.MethodPost, s.path("/token"), nil, nil, &t); err != nil {
		return t, err
	}
	if t.Token == "" {
		return t, &Error{Op: "refresh token", Code: CodeUnexpectedAnswer, Message: "the token answer carries no token"}
	}
	return t, nil
}

// dataEndpoint returns where data-path calls go, renewing the token first
// when it is about to expire. While one caller renews it, the others go on
// with the current token as long as it has not expired yet.
func (s *Sandbox) dataEndpoint(ctx context.Context) (endpoint, error) {
	s.mu.Lock()
	if s.token == "" || s.connectURL == "" {
		s.mu.Unlock()
		return s.client.lifecycle(), nil
	}
	if !s.expiresAt.IsZero() {
		now := s.client.now()
		margin := s.client.tokenMargin
		if life := s.expiresAt.Sub(s.issuedAt); life/4 < margin {
			margin = life / 4
		}
		renewing := s.refreshing != nil && now.Before(s.expiresAt)
		if s.expiresAt.Sub(now) <= margin && !renewing {
			stale := s.token
			s.mu.Unlock()
			if err := s.refreshToken(ctx, stale); err != nil {
				return endpoint{}, err
			}
			s.mu.Lock()
		}
	}
	defer s.mu.Unlock()
	return endpoint{base: s.connectURL, token: s.token}, nil
}

// send performs a data-path call. An answer "token_expired" (the clocks
// disagree, or the token was revoked) renews the token and retries once when
// the body can be sent again.
func (s *Sandbox) send(ctx context.Context, r request) (*http.Response, error) {
	ep, err := s.dataEndpoint(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := s.client.send(ctx, ep, r)
	var e *Error
	if err == nil || ep.token == "" || !errors.As(err, &e) || e.Code != CodeTokenExpired {
		return resp, err
	}
	if rerr := s.refreshToken(ctx, ep.token); rerr != nil {
		return nil, rerr
	}
	if r.body != nil && r.replay == nil {
		return nil, err // a stream cannot be sent again; the next call has a fresh token
	}
	if r.replay != nil {
		r.body = r.replay()
	}
	if ep, err = s.dataEndpoint(ctx); err != nil {
		return nil, err
	}
	return s.client.send(ctx, ep, r)
}

// dataJSON is doJSON on the data path.
func (s *Sandbox) dataJSON(ctx context.Context, method, rest string, query url.Values, in, out any) error {
	r, err := jsonRequest(method, s.path(rest), query, in)
	if err != nil {
		return err
	}
	resp, err := s.send(ctx, r)
	if err != nil {
		return err
	}
	return decodeJSON(r.op(), resp, out)
}

// dataRaw sends a raw body (nil for none) on the data path and returns the answer.
func (s *Sandbox) dataRaw(ctx context.Context, method, rest string, query url.Values, body io.Reader, length int64, header http.Header) (*http.Response, error) {
	if header == nil {
		header = http.Header{}
	}
	return s.send(ctx, request{method: method, path: s.path(rest), query: query, body: body, length: length, header: header})
}
