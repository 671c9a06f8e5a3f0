package server

import (
	"bufio"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/api"
)

// metricValue returns the value of one exact series from /metrics, or -1.
func metricValue(t *testing.T, s *stack, series string) float64 {
	t.Helper()
	_, body := s.do(t, "GET", "/metrics", nil)
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", series, err)
			}
			return f
		}
	}
	return -1
}

func TestInteractiveMetrics(t *testing.T) {
	s := startCombined(t, nil)
	id := createBox(t, s, "busybox")
	want := func(series string, v float64) {
		t.Helper()
		eventually(t, 5*time.Second, series, func() bool { return metricValue(t, s, series) == v })
	}

	st := openSSE(t, s, "POST", "/sandboxes/"+id+"/commands", `{"cmd":"printf 12345; printf ab >&2","stream":true}`)
	st.collect(t)
	want(`opensandbox_process_starts_total{mode="stream"}`, 1)
	want(`opensandbox_process_stream_bytes_total{stream="stdout"}`, 5)
	want(`opensandbox_process_stream_bytes_total{stream="stderr"}`, 2)
	want(`opensandbox_commands_total{exit_class="ok"}`, 1)
	want("opensandbox_process_streams_active", 0)
	s.json(t, "POST", "/sandboxes/"+id+"/commands", api.ProcessConfig{Cmd: "sleep 1", Background: true}, 200, nil)
	want(`opensandbox_process_starts_total{mode="background"}`, 1)

	session := createPTY(t, s, id, api.PTYConfig{})
	want("opensandbox_pty_sessions_active", 1)
	want("opensandbox_pty_sessions_total", 1)
	c := openTerm(t, s, id, session)
	c.send("exit\n")
	c.waitExit()
	want("opensandbox_pty_sessions_active", 0)
	if v := metricValue(t, s, `opensandbox_pty_bytes_total{direction="in"}`); v != 5 {
		t.Errorf("pty bytes in %v, want 5", v)
	}
	if v := metricValue(t, s, `opensandbox_pty_bytes_total{direction="out"}`); v <= 0 {
		t.Errorf("pty bytes out %v", v)
	}

	w := openSSE(t, s, "GET", "/sandboxes/"+id+"/files/watch?path=/tmp", "")
	w.next(t)
	want("opensandbox_file_watches_active", 1)
	s.json(t, "POST", "/sandboxes/"+id+"/commands", api.ProcessConfig{Cmd: "touch /tmp/m"}, 200, nil)
	w.next(t)
	want("opensandbox_file_watch_events_total", 1)
	w.resp.Body.Close()
	want("opensandbox_file_watches_active", 0)

	// A second terminal is open when the sandbox is killed: its row still ends.
	createPTY(t, s, id, api.PTYConfig{})
	want("opensandbox_pty_sessions_active", 1)
	rows, _ := s.mgr.PTYSessions(t.Context(), id)
	if len(rows) != 2 || rows[0].EndedAt.IsZero() || !rows[1].EndedAt.IsZero() {
		t.Fatalf("pty rows before kill: %+v", rows)
	}
	s.json(t, "DELETE", "/sandboxes/"+id, nil, 204, nil)
	want("opensandbox_pty_sessions_active", 0)
}
