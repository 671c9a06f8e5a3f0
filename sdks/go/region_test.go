package opensandbox

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

// Against a stub of the control plane's create route: Region and
// StrictRegion travel in the body, the answer's region is the one used,
// and 503 no_capacity keeps its code.
func TestCreateRegionAndStrictRegion(t *testing.T) {
	var bodies []map[string]any
	full := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b map[string]any
		json.NewDecoder(r.Body).Decode(&b)
		bodies = append(bodies, b)
		w.Header().Set("Content-Type", "application/json")
		if full {
			w.WriteHeader(503)
			w.Write([]byte(`{"error":"no healthy capacity in region \"eu\" (strictRegion)","code":"no_capacity"}`))
			return
		}
		w.WriteHeader(201)
		w.Write([]byte(`{"sandboxID":"sb1","status":"running","region":"us"}`))
	}))
	defer srv.Close()
	c := NewClient(WithAPIURL(srv.URL), WithAPIKey(stubKey))
	ctx := context.Background()
	sbx, err := c.Create(ctx, CreateOptions{Template: "busybox", Region: "eu"})
	if err != nil {
		t.Fatal(err)
	}
	if sbx.Cached().Region != "us" {
		t.Fatalf("region used %q", sbx.Cached().Region)
	}
	full = true
	_, err = c.Create(ctx, CreateOptions{Template: "busybox", Region: "eu", StrictRegion: true})
	var apiErr *Error
	if !errors.As(err, &apiErr) || apiErr.Code != "no_capacity" || apiErr.Status != 503 {
		t.Fatalf("strict create: %v", err)
	}
	if bodies[0]["region"] != "eu" || bodies[0]["strictRegion"] != nil || bodies[1]["strictRegion"] != true {
		t.Fatalf("bodies %v", bodies)
	}
}
