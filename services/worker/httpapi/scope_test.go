package httpapi

import (
	"reflect"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/opensandbox/opensandbox/services/shared/auth"
	"github.com/opensandbox/opensandbox/services/worker/sandbox"
)

// Every data-path route needs the full scope except the plain reads listed
// here: a route added later without a decision fails this test.
func TestDataRoutesNeedTheFullScope(t *testing.T) {
	reads := map[string]bool{
		"GET /sandboxes/:id/files":      true,
		"GET /sandboxes/:id/files/list": true,
		"GET /sandboxes/:id/files/stat": true,
		"GET /sandboxes/:id/processes":  true,
	}
	app := fiber.New()
	New((*sandbox.Manager)(nil), 1).MountData(app)
	full := reflect.ValueOf(auth.RequireFull).Pointer()
	seen := 0
	for _, r := range app.GetRoutes(true) {
		if r.Method == fiber.MethodHead {
			continue // Fiber adds HEAD beside every GET
		}
		key := r.Method + " " + r.Path
		guarded := false
		for _, h := range r.Handlers {
			guarded = guarded || reflect.ValueOf(h).Pointer() == full
		}
		switch {
		case reads[key] && guarded:
			t.Errorf("%s is a read but needs the full scope", key)
		case !reads[key] && !guarded:
			t.Errorf("%s does not need the full scope: read-only tokens and keys would reach it", key)
		}
		seen++
	}
	if seen < 15 {
		t.Fatalf("only %d data routes mounted: the interactive routes are missing", seen)
	}
}
