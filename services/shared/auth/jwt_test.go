package auth

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/golang-jwt/jwt/v5"
	"github.com/opensandbox/opensandbox/services/shared/errs"
)

func TestSandboxTokenVerify(t *testing.T) {
	tokens, err := NewSandboxTokens("0123456789abcdef-secret")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewSandboxTokens("short"); err == nil {
		t.Fatal("short secret accepted")
	}
	good, exp, _ := tokens.Issue(grant("org1", "sb1", "w1", time.Now().Add(time.Minute)))
	expired, _, _ := tokens.Issue(grant("org1", "sb1", "w1", time.Now().Add(-time.Second)))
	other, _ := NewSandboxTokens("another-secret-of-16+")
	forged, _, _ := other.Issue(grant("org1", "sb1", "w1", time.Now().Add(time.Minute)))
	inAMinute := jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Minute))}
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, SandboxClaims{SandboxID: "sb1", Scope: ScopeFull, RegisteredClaims: inAMinute}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	noExp, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, SandboxClaims{SandboxID: "sb1", Scope: ScopeFull}).SignedString([]byte("0123456789abcdef-secret"))
	// A token of an older version has no scope; one with a scope we do not
	// know is refused.
	unscoped, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, SandboxClaims{SandboxID: "sb1", RegisteredClaims: inAMinute}).SignedString([]byte("0123456789abcdef-secret"))
	oddScope, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, SandboxClaims{SandboxID: "sb1", Scope: "admin", RegisteredClaims: inAMinute}).SignedString([]byte("0123456789abcdef-secret"))

	c, err := tokens.Verify(good)
	if err != nil || c.OrgID != "org1" || c.SandboxID != "sb1" || c.WorkerID != "w1" || c.Scope != ScopeFull || c.KeyID != "key1" {
		t.Fatalf("good token: %+v %v", c, err)
	}
	if d := time.Until(exp); d > time.Minute || d < 58*time.Second {
		t.Fatalf("token expiry %s from now, want about a minute", d)
	}
	for name, tc := range map[string]struct {
		tok  string
		want *errs.Error
	}{
		"expired":       {expired, ErrTokenExpired},
		"forged":        {forged, errs.ErrForbidden},
		"alg none":      {none, errs.ErrForbidden},
		"no exp":        {noExp, errs.ErrForbidden},
		"garbage":       {"abc.def.ghi", errs.ErrForbidden},
		"no scope":      {unscoped, ErrTokenExpired},
		"unknown scope": {oddScope, errs.ErrForbidden},
	} {
		_, err := tokens.Verify(tc.tok)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	if ErrTokenExpired.Kind.HTTPStatus() != 401 {
		t.Fatal("expired token must answer 401")
	}
	// No token outlives MaxTokenLifetime, and every token has a scope.
	_, exp, err = tokens.Issue(grant("org1", "sb1", "w1", time.Now().Add(365*24*time.Hour)))
	if err != nil || time.Until(exp) > MaxTokenLifetime {
		t.Fatalf("a year-long sandbox got a token until %s (%v)", exp, err)
	}
	if _, _, err := tokens.Issue(Grant{SandboxID: "sb1", Expires: time.Now().Add(time.Minute)}); err == nil {
		t.Fatal("a token without a scope was issued")
	}
}

func grant(org, sandbox, worker string, exp time.Time) Grant {
	return Grant{OrgID: org, SandboxID: sandbox, WorkerID: worker, Scope: ScopeFull, KeyID: "key1", Expires: exp}
}

func TestSandboxJWTMiddleware(t *testing.T) {
	tokens, _ := NewSandboxTokens("0123456789abcdef-secret")
	var failures []string
	app := fiber.New(fiber.Config{ErrorHandler: func(c *fiber.Ctx, err error) error {
		e := errs.As(err)
		return c.Status(e.Kind.HTTPStatus()).SendString(e.Code)
	}})
	app.Use(SandboxJWT(tokens, "w1", nil, func(r string) { failures = append(failures, r) }))
	app.Get("/sandboxes/:id/*", func(c *fiber.Ctx) error {
		claims := c.Locals(LocalSandboxClaims).(SandboxClaims)
		proto, _ := c.Locals(LocalWebSocketProtocol).(string)
		return c.SendString(claims.SandboxID + "|" + proto)
	})
	tokA, _, _ := tokens.Issue(grant("o", "sbA", "w1", time.Now().Add(time.Minute)))
	tokOtherWorker, _, _ := tokens.Issue(grant("o", "sbA", "w2", time.Now().Add(time.Minute)))
	tokOld, _, _ := tokens.Issue(grant("o", "sbA", "w1", time.Now().Add(-time.Minute)))
	for _, tc := range []struct {
		name, path, hdr, val string
		status               int
		body                 string
	}{
		{"bearer", "/sandboxes/sbA/files", "Authorization", "Bearer " + tokA, 200, "sbA|"},
		{"query", "/sandboxes/sbA/files?token=" + tokA, "", "", 200, "sbA|"},
		{"subprotocol", "/sandboxes/sbA/pty/x", "Sec-WebSocket-Protocol", "osb, bearer." + tokA, 200, "sbA|bearer." + tokA},
		{"missing", "/sandboxes/sbA/files", "", "", 401, "unauthenticated"},
		{"other sandbox", "/sandboxes/sbB/files", "Authorization", "Bearer " + tokA, 403, "forbidden"},
		{"other worker", "/sandboxes/sbA/files", "Authorization", "Bearer " + tokOtherWorker, 403, "forbidden"},
		{"expired", "/sandboxes/sbA/files", "Authorization", "Bearer " + tokOld, 401, "token_expired"},
		{"not a sandbox path", "/other", "Authorization", "Bearer " + tokA, 403, "forbidden"},
	} {
		req := httptest.NewRequest("GET", tc.path, nil)
		if tc.hdr != "" {
			req.Header.Set(tc.hdr, tc.val)
		}
		resp, err := app.Test(req)
		if err != nil {
			t.Fatal(err)
		}
		var sb strings.Builder
		buf := make([]byte, 4096)
		n, _ := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if resp.StatusCode != tc.status || sb.String() != tc.body {
			t.Errorf("%s: %d %q, want %d %q", tc.name, resp.StatusCode, sb.String(), tc.status, tc.body)
		}
	}
	if strings.Join(failures, ",") != "missing,wrong_sandbox,wrong_worker,expired,wrong_sandbox" {
		t.Errorf("failures observed: %v", failures)
	}
}
