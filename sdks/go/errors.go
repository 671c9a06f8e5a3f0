package opensandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Sentinels for errors.Is. Every error the SDK returns for a failed call is an
// *Error; it matches the sentinels that fit its HTTP status and code:
//
//	if errors.Is(err, opensandbox.ErrNotFound) { ... }
var (
	// ErrNotFound: the sandbox, file, process or PTY session does not exist (404).
	ErrNotFound = errors.New("not found")
	// ErrAuthentication: the API key or sandbox token is missing, wrong or expired (401, 403).
	ErrAuthentication = errors.New("authentication failed")
	// ErrRateLimit: a quota or rate limit was reached (429).
	ErrRateLimit = errors.New("rate limit or quota exceeded")
	// ErrInvalidArgument: the server refused the request's input (400, 413).
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrTimeout: the call or the command ran out of time (504, a context
	// deadline, or a command killed by its own timeout).
	ErrTimeout = errors.New("timeout")
	// ErrSandboxGone: the sandbox no longer exists: it was killed, it timed
	// out, or it never existed (404 sandbox_not_found, 410).
	ErrSandboxGone = errors.New("sandbox gone")
	// ErrUnavailable: the server has no capacity or a dependency is down (503).
	ErrUnavailable = errors.New("service unavailable")
)

// Error codes the server sends (docs/api.md); the SDK adds CodeTransport,
// CodeCommandTimeout and CodeStream for failures it sees itself.
const (
	CodeInvalidArgument  = "invalid_argument"
	CodeUnauthenticated  = "unauthenticated"
	CodeForbidden        = "forbidden"
	CodeTokenExpired     = "token_expired"
	CodeSandboxNotFound  = "sandbox_not_found"
	CodeFileNotFound     = "file_not_found"
	CodeProcessNotFound  = "process_not_found"
	CodePTYNotFound      = "pty_not_found"
	CodeQuotaExceeded    = "quota_exceeded"
	CodeTransport        = "transport"
	CodeCommandTimeout   = "command_timeout"
	CodeStream           = "stream_error"
	CodeUnexpectedAnswer = "unexpected_answer"
)

// Error is a failed call: an error answer of the server (Status > 0), or a
// failure to reach it (Status 0, Code "transport", the cause in Err).
type Error struct {
	Status    int    // HTTP status; 0 when no answer arrived
	Code      string // machine-readable code, e.g. "sandbox_not_found"
	Message   string // human-readable message
	Op        string // what was attempted, e.g. "GET /sandboxes/abc"
	RequestID string // the server's X-Request-Id, for its logs
	Err       error  // cause, if any (network error, context error)
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("opensandbox: ")
	if e.Op != "" {
		b.WriteString(e.Op)
		b.WriteString(": ")
	}
	if e.Message != "" {
		b.WriteString(e.Message)
	} else if e.Err != nil {
		b.WriteString(e.Err.Error())
	}
	if e.Status != 0 || e.Code != "" {
		b.WriteString(" (")
		if e.Status != 0 {
			fmt.Fprintf(&b, "%d", e.Status)
			if e.Code != "" {
				b.WriteString(" ")
			}
		}
		b.WriteString(e.Code)
		b.WriteString(")")
	}
	return b.String()
}

// Unwrap returns the cause, so errors.Is(err, context.Canceled) works.
func (e *Error) Unwrap() error { return e.Err }

// Is matches the package's sentinels by status and code.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Status == http.StatusNotFound || strings.HasSuffix(e.Code, "_not_found")
	case ErrAuthentication:
		return e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden
	case ErrRateLimit:
		return e.Status == http.StatusTooManyRequests || e.Code == CodeQuotaExceeded
	case ErrInvalidArgument:
		return e.Status == http.StatusBadRequest || e.Status == http.StatusRequestEntityTooLarge ||
			e.Code == CodeInvalidArgument
	case ErrTimeout:
		return e.Status == http.StatusGatewayTimeout || e.Code == CodeCommandTimeout ||
			errors.Is(e.Err, context.DeadlineExceeded)
	case ErrSandboxGone:
		return e.Code == CodeSandboxNotFound || e.Status == http.StatusGone
	case ErrUnavailable:
		return e.Status == http.StatusServiceUnavailable
	}
	return false
}

// errorBody is the JSON of every error answer.
type errorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// errorFromResponse reads an error answer (and closes its body).
func errorFromResponse(op string, resp *http.Response) *Error {
	defer resp.Body.Close()
	e := &Error{Status: resp.StatusCode, Op: op, RequestID: resp.Header.Get("X-Request-Id")}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var body errorBody
	if json.Unmarshal(raw, &body) == nil && (body.Error != "" || body.Code != "") {
		e.Message, e.Code = body.Error, body.Code
	} else {
		e.Message = strings.TrimSpace(string(raw))
	}
	if e.Message == "" {
		e.Message = strings.ToLower(http.StatusText(resp.StatusCode))
	}
	if e.Code == "" {
		e.Code = fmt.Sprintf("http_%d", resp.StatusCode)
	}
	return e
}

// transportError wraps a failure to reach the server or to read its answer.
func transportError(op string, err error) error {
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return &Error{Op: op, Code: CodeTransport, Message: err.Error(), Err: err}
}
