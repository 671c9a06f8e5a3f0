package opensandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestErrorIs(t *testing.T) {
	all := []error{ErrNotFound, ErrAuthentication, ErrRateLimit, ErrInvalidArgument, ErrTimeout, ErrSandboxGone, ErrUnavailable}
	tests := []struct {
		name string
		err  *Error
		want []error
	}{
		{"sandbox not found", &Error{Status: 404, Code: CodeSandboxNotFound}, []error{ErrNotFound, ErrSandboxGone}},
		{"file not found", &Error{Status: 404, Code: CodeFileNotFound}, []error{ErrNotFound}},
		{"process not found", &Error{Status: 404, Code: CodeProcessNotFound}, []error{ErrNotFound}},
		{"gone", &Error{Status: 410, Code: "sandbox_gone"}, []error{ErrSandboxGone}},
		{"missing key", &Error{Status: 401, Code: CodeUnauthenticated}, []error{ErrAuthentication}},
		{"wrong key", &Error{Status: 403, Code: CodeForbidden}, []error{ErrAuthentication}},
		{"expired token", &Error{Status: 401, Code: CodeTokenExpired}, []error{ErrAuthentication}},
		{"quota", &Error{Status: 429, Code: CodeQuotaExceeded}, []error{ErrRateLimit}},
		{"bad input", &Error{Status: 400, Code: CodeInvalidArgument}, []error{ErrInvalidArgument}},
		{"too large", &Error{Status: 413, Code: "body_too_large"}, []error{ErrInvalidArgument}},
		{"gateway timeout", &Error{Status: 504, Code: "timeout"}, []error{ErrTimeout}},
		{"command timeout", &Error{Code: CodeCommandTimeout}, []error{ErrTimeout}},
		{"deadline", &Error{Code: CodeTransport, Err: fmt.Errorf("dial: %w", context.DeadlineExceeded)}, []error{ErrTimeout}},
		{"full", &Error{Status: 503, Code: "worker_full"}, []error{ErrUnavailable}},
		{"internal", &Error{Status: 500, Code: "internal"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error = fmt.Errorf("wrapped: %w", tt.err)
			for _, s := range all {
				want := false
				for _, w := range tt.want {
					want = want || w == s
				}
				if got := errors.Is(err, s); got != want {
					t.Errorf("errors.Is(%v, %v) = %v, want %v", tt.err, s, got, want)
				}
			}
			var e *Error
			if !errors.As(err, &e) || e != tt.err {
				t.Errorf("errors.As did not find the *Error")
			}
		})
	}
}

func TestErrorUnwrap(t *testing.T) {
	err := transportError("GET /x", context.Canceled)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("%v does not unwrap to context.Canceled", err)
	}
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeTransport || e.Status != 0 {
		t.Fatalf("transport error = %#v", err)
	}
	// An *Error is passed through, not wrapped twice.
	if again := transportError("GET /y", err); again != err {
		t.Fatalf("transportError wrapped an *Error again: %v", again)
	}
}

func TestErrorFromResponse(t *testing.T) {
	tests := []struct {
		name         string
		status       int
		body         string
		code, msg    string
		errorMessage string
	}{
		{"json", 404, `{"error":"sandbox abc not found","code":"sandbox_not_found"}`, "sandbox_not_found", "sandbox abc not found",
			"opensandbox: GET /sandboxes/abc: sandbox abc not found (404 sandbox_not_found)"},
		{"plain text", 502, "bad gateway\n", "http_502", "bad gateway", ""},
		{"empty", 503, "", "http_503", "service unavailable", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := &http.Response{StatusCode: tt.status, Header: http.Header{"X-Request-Id": {"r1"}},
				Body: io.NopCloser(strings.NewReader(tt.body))}
			e := errorFromResponse("GET /sandboxes/abc", resp)
			if e.Status != tt.status || e.Code != tt.code || e.Message != tt.msg || e.RequestID != "r1" {
				t.Fatalf("got %#v", e)
			}
			if tt.errorMessage != "" && e.Error() != tt.errorMessage {
				t.Fatalf("Error() = %q, want %q", e.Error(), tt.errorMessage)
			}
		})
	}
}
