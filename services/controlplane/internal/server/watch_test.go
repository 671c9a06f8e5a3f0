package server

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/api"
)

// Create, write, rename and remove in a watched directory each produce
// their event; a directory made later is watched too (recursive); closing
// the stream releases the inotify instance in the agent.
func TestWatchEventsAndRelease(t *testing.T) {
	s := startCombined(t, nil)
	id := createBox(t, s, "busybox")
	s.json(t, "POST", "/sandboxes/"+id+"/files/mkdir?path=/w", nil, 200, nil)
	agent := agentPID(t, id)
	if n := inotifyInstances(t, agent); n != 0 {
		t.Fatalf("agent holds %d inotify instances before any watch", n)
	}
	st := openSSE(t, s, "GET", "/sandboxes/"+id+"/files/watch?path=/w&recursive=true", "")
	if ev, _ := st.next(t); ev.name != "ready" || ev.data != `{"type":"ready"}` {
		t.Fatalf("first event %+v", ev)
	}
	if n := inotifyInstances(t, agent); n != 1 {
		t.Fatalf("agent holds %d inotify instances during the watch", n)
	}
	expect := func(want api.WatchEvent) {
		t.Helper()
		for {
			ev, ok := st.next(t)
			if !ok {
				t.Fatalf("stream ended waiting for %+v", want)
			}
			var got api.WatchEvent
			if err := json.Unmarshal([]byte(ev.data), &got); err != nil || ev.name != got.Type {
				t.Fatalf("event %+v: %v", ev, err)
			}
			if got == want {
				return
			}
		}
	}
	exec := func(cmd string) {
		t.Helper()
		var res api.ProcessResult
		s.json(t, "POST", "/sandboxes/"+id+"/commands", api.ProcessConfig{Cmd: cmd}, 200, &res)
		if res.ExitCode != 0 {
			t.Fatalf("%s: %+v", cmd, res)
		}
	}
	exec("touch /w/a")
	expect(api.WatchEvent{Type: "create", Path: "/w/a"})
	exec("echo data >> /w/a")
	expect(api.WatchEvent{Type: "write", Path: "/w/a"})
	exec("mv /w/a /w/b")
	expect(api.WatchEvent{Type: "rename", Path: "/w/a"})
	expect(api.WatchEvent{Type: "create", Path: "/w/b"})
	exec("chmod 600 /w/b")
	expect(api.WatchEvent{Type: "chmod", Path: "/w/b"})
	exec("rm /w/b")
	expect(api.WatchEvent{Type: "remove", Path: "/w/b"})
	exec("mkdir /w/sub && echo x > /w/sub/deep")
	expect(api.WatchEvent{Type: "create", Path: "/w/sub", IsDir: true})
	expect(api.WatchEvent{Type: "create", Path: "/w/sub/deep"})
	// Events come through the data path too, and the raw JSON is as documented.
	resp, _ := s.do(t, "PUT", "/sandboxes/"+id+"/files?path=/w/up.txt", strings.NewReader("u"))
	resp.Body.Close()
	for {
		ev, ok := st.next(t)
		if !ok {
			t.Fatal("stream ended")
		}
		// The upload lands as a temporary file renamed into place.
		if strings.Contains(ev.data, `"/w/up.txt"`) {
			if ev.data != `{"type":"create","path":"/w/up.txt","isDir":false}` {
				t.Fatalf("raw event %q", ev.data)
			}
			break
		}
	}

	st.resp.Body.Close()
	eventually(t, 10*time.Second, "watch released in the agent", func() bool { return inotifyInstances(t, agent) == 0 })
	resp, body := s.do(t, "GET", "/sandboxes/"+id+"/files/watch?path=/no/such/dir", nil)
	wantError(t, resp, body, 404, "file_not_found")
	resp, body = s.do(t, "GET", "/sandboxes/"+id+"/files/watch", nil)
	wantError(t, resp, body, 400, "invalid_argument")
}
