// Package errs defines the error kinds every OpenSandbox service shares, so that
// a failure deep in the runtime maps to one HTTP status (or gRPC code) in one place.
package errs

import (
	"errors"
	"fmt"
	"net/http"
)

// Kind classifies an error by what the caller should do about it.
type Kind int

const (
	KindInternal        Kind = iota // a real fault: 500
	KindInvalid                     // bad input: 400
	KindUnauthenticated             // no credentials: 401
	KindForbidden                   // wrong credentials or scope: 403
	KindNotFound                    // 404
	KindConflict                    // 409
	KindTooLarge                    // 413
	KindQuota                       // 429
	KindUnavailable                 // 503: no capacity, dependency down
	KindTimeout                     // 504
	KindRange                       // 416: a byte range outside the file
	KindNoSpace                     // 507: the sandbox's disk is full

	kindEnd // after the last kind
)

// Error is an error with a kind, a stable machine-readable code and a message
// that is safe to show to the caller.
type Error struct {
	Kind    Kind
	Code    string
	Message string
	Err     error // optional cause, never shown to callers
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// WithCause returns a copy of e that records cause for logs.
func (e *Error) WithCause(cause error) *Error {
	c := *e
	c.Err = cause
	return &c
}

// Is lets errors.Is match on kind and code, e.g. errors.Is(err, errs.ErrSandboxNotFound).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Kind == e.Kind && t.Code == e.Code
}

func newf(kind Kind, code, format string, args ...any) *Error {
	return &Error{Kind: kind, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Invalid reports bad input.
func Invalid(format string, args ...any) *Error {
	return newf(KindInvalid, "invalid_argument", format, args...)
}

// NotFound reports a missing resource; code names what is missing.
func NotFound(code, format string, args ...any) *Error {
	return newf(KindNotFound, code, format, args...)
}

// TooLarge reports a body over its limit.
func TooLarge(format string, args ...any) *Error {
	return newf(KindTooLarge, "body_too_large", format, args...)
}

// Unavailable reports missing capacity or a dependency that is down.
func Unavailable(code, format string, args ...any) *Error {
	return newf(KindUnavailable, code, format, args...)
}

// Internal wraps a real fault; the cause is logged, not shown.
func Internal(msg string, err error) *Error {
	return &Error{Kind: KindInternal, Code: "internal", Message: msg, Err: err}
}

// New builds an error of any kind.
func New(kind Kind, code, format string, args ...any) *Error {
	return newf(kind, code, format, args...)
}

// Sentinels for errors.Is.
var (
	ErrSandboxNotFound = &Error{Kind: KindNotFound, Code: "sandbox_not_found", Message: "sandbox not found"}
	ErrFileNotFound    = &Error{Kind: KindNotFound, Code: "file_not_found", Message: "file not found"}
	ErrUnauthenticated = &Error{Kind: KindUnauthenticated, Code: "unauthenticated", Message: "missing credentials"}
	ErrForbidden       = &Error{Kind: KindForbidden, Code: "forbidden", Message: "invalid credentials"}
)

// As returns the *Error in err's chain, or an internal error wrapping err.
func As(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return Internal("internal error", err)
}

// HTTPStatus maps a kind to its HTTP status.
func (k Kind) HTTPStatus() int {
	switch k {
	case KindInvalid:
		return http.StatusBadRequest
	case KindUnauthenticated:
		return http.StatusUnauthorized
	case KindForbidden:
		return http.StatusForbidden
	case KindNotFound:
		return http.StatusNotFound
	case KindConflict:
		return http.StatusConflict
	case KindTooLarge:
		return http.StatusRequestEntityTooLarge
	case KindQuota:
		return http.StatusTooManyRequests
	case KindUnavailable:
		return http.StatusServiceUnavailable
	case KindTimeout:
		return http.StatusGatewayTimeout
	case KindRange:
		return http.StatusRequestedRangeNotSatisfiable
	case KindNoSpace:
		return http.StatusInsufficientStorage
	default:
		return http.StatusInternalServerError
	}
}

// FromHTTP rebuilds an error from a status and the JSON body of another service.
func FromHTTP(status int, code, message string) *Error {
	kind := KindInternal
	for k := KindInternal; k < kindEnd; k++ {
		if k.HTTPStatus() == status {
			kind = k
			break
		}
	}
	if message == "" {
		message = http.StatusText(status)
	}
	if code == "" {
		code = "http_" + fmt.Sprint(status)
	}
	return &Error{Kind: kind, Code: code, Message: message}
}
