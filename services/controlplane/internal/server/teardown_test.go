package server

import (
	"net/http"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/api"
)

// Killing a sandbox ends everything attached to it: streamed runs,
// connected process streams, watches and terminals, and the server is left
// with no goroutine of theirs.
func TestKillEndsEveryStream(t *testing.T) {
	s := startCombined(t, nil)
	id := createBox(t, s, "busybox")
	before := runtime.NumGoroutine()

	run := openSSE(t, s, "POST", "/sandboxes/"+id+"/commands", `{"cmd":"echo go; sleep 6401","stream":true}`)
	run.next(t)
	var bg api.ProcessStarted
	s.json(t, "POST", "/sandboxes/"+id+"/commands", api.ProcessConfig{Cmd: "sleep 6402", Background: true}, 200, &bg)
	// A silent process: the stream must open at once all the same.
	opened := time.Now()
	conn := openSSE(t, s, "GET", "/sandboxes/"+id+"/processes/"+strconv.Itoa(bg.PID)+"/stream", "")
	if d := time.Since(opened); d > 5*time.Second {
		t.Fatalf("connecting to a silent process took %s", d)
	}
	watch := openSSE(t, s, "GET", "/sandboxes/"+id+"/files/watch?path=/tmp", "")
	watch.next(t)
	session := createPTY(t, s, id, api.PTYConfig{})
	term := openTerm(t, s, id, session)
	term.send("echo attached-$((7*6))\n")
	term.until("attached-42")

	s.json(t, "DELETE", "/sandboxes/"+id, nil, 204, nil)

	for name, st := range map[string]*sseStream{"streamed run": run, "connected stream": conn} {
		r := st.collect(t)
		if r.exit == nil || r.exit.Type != "error" || r.exit.Code != "sandbox_not_found" {
			t.Errorf("%s ended with %+v", name, r.exit)
		}
	}
	for {
		if _, ok := watch.next(t); !ok {
			break
		}
	}
	term.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, _, err := term.ws.ReadMessage(); err != nil {
			break
		}
	}
	for _, st := range []*sseStream{run, conn, watch} {
		st.resp.Body.Close()
	}
	term.ws.Close()
	http.DefaultClient.CloseIdleConnections()
	eventually(t, 10*time.Second, "goroutines of the streams gone", func() bool {
		return runtime.NumGoroutine() <= before+2
	})
}
