package auth

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/opensandbox/opensandbox/services/shared/errs"
)

// Every way a browser or SDK can carry the key is accepted; a wrong key is
// refused with 403 and a missing one with 401, before any handler runs.
func TestStaticKeyCarriers(t *testing.T) {
	app := fiber.New(fiber.Config{ErrorHandler: func(c *fiber.Ctx, err error) error {
		return c.SendStatus(errs.As(err).Kind.HTTPStatus())
	}})
	reached := 0
	app.Use(StaticKey("k1"))
	app.Get("/", func(c *fiber.Ctx) error { reached++; return c.SendStatus(200) })
	for _, tc := range []struct {
		name   string
		target string
		hdr    map[string]string
		status int
	}{
		{"header", "/", map[string]string{"X-API-Key": "k1"}, 200},
		{"api_key query", "/?api_key=k1", nil, 200},
		{"token query", "/?token=k1", nil, 200},
		{"bearer", "/", map[string]string{"Authorization": "Bearer k1"}, 200},
		{"subprotocol", "/", map[string]string{"Sec-WebSocket-Protocol": "osb, bearer.k1"}, 200},
		{"missing", "/", nil, 401},
		{"empty subprotocol", "/", map[string]string{"Sec-WebSocket-Protocol": "bearer."}, 401},
		{"wrong token query", "/?token=nope", nil, 403},
		{"wrong subprotocol", "/", map[string]string{"Sec-WebSocket-Protocol": "bearer.nope"}, 403},
	} {
		req := httptest.NewRequest(http.MethodGet, tc.target, nil)
		for k, v := range tc.hdr {
			req.Header.Set(k, v)
		}
		before := reached
		resp, err := app.Test(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.status)
		}
		if tc.status != 200 && reached != before {
			t.Errorf("%s: handler ran without valid credentials", tc.name)
		}
	}
}
