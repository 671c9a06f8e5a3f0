package opensandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// Kill of a sandbox that is already gone answers false and no error, as the
// Python and TypeScript SDKs do; other failures stay errors.
func TestKillOfMissingSandboxAnswersFalse(t *testing.T) {
	stubs := newTokenStubs(t, time.Hour)
	ctx := context.Background()
	c := stubs.client()
	for id, want := range map[string]struct {
		killed bool
		err    bool
	}{"sb1": {true, false}, "gone": {false, false}, "broken": {false, true}} {
		killed, err := newSandbox(c, SandboxInfo{SandboxID: id}).Kill(ctx)
		if killed != want.killed || (err != nil) != want.err {
			t.Errorf("kill %s: %v, %v; want %v and error %v", id, killed, err, want.killed, want.err)
		}
	}
}

// The server takes timeouts as whole seconds: every timeout the SDK sends is
// rounded up, and a positive fraction of a second becomes 1.
func TestTimeoutsRoundedUpToWholeSeconds(t *testing.T) {
	var mu sync.Mutex
	var sent []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Timeout *json.RawMessage `json:"timeout"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		if body.Timeout != nil {
			sent = append(sent, fmt.Sprintf("%s %s %s", r.Method, r.URL.Path, *body.Timeout))
		} else {
			sent = append(sent, r.Method+" "+r.URL.Path+" -")
		}
		mu.Unlock()
		switch r.URL.Path {
		case "/sandboxes":
			writeJSON(w, 201, SandboxInfo{SandboxID: "sb1", Status: StatusRunning})
		case "/sandboxes/sb1/timeout":
			w.WriteHeader(204)
		default:
			writeJSON(w, 200, map[string]any{"pid": 7, "exitCode": 0})
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	sbx, err := NewClient(WithAPIURL(srv.URL)).Create(ctx, CreateOptions{Timeout: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []time.Duration{400 * time.Millisecond, time.Second, 2*time.Second + time.Nanosecond} {
		if err := sbx.SetTimeout(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sbx.Commands().Run(ctx, "true", RunOptions{Timeout: 400 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if _, err := sbx.Commands().Start(ctx, "sleep 9", RunOptions{Timeout: 2100 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if _, err := sbx.Commands().Run(ctx, "true", RunOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []time.Duration{0, -time.Second} {
		if err := sbx.SetTimeout(ctx, d); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("SetTimeout(%v): %v, want ErrInvalidArgument", d, err)
		}
	}
	want := "[POST /sandboxes 2 POST /sandboxes/sb1/timeout 1 POST /sandboxes/sb1/timeout 1 POST /sandboxes/sb1/timeout 3 " +
		"POST /sandboxes/sb1/commands 1 POST /sandboxes/sb1/commands 3 POST /sandboxes/sb1/commands -]"
	if got := fmt.Sprint(sent); got != want {
		t.Fatalf("server saw\n%s\nwant\n%s", got, want)
	}
}
