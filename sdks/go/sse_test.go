package opensandbox

import (
	"io"
	"strings"
	"testing"
)

func TestSSEReader(t *testing.T) {
	stream := "event: start\ndata: {\"type\":\"start\",\"pid\":42}\n\n" +
		": keepalive\n\n" +
		"event: stdout\r\ndata: {\"type\":\"stdout\",\"data\":\"aGVsbG8K\"}\r\n\r\n" +
		"data: {\"type\":\"stderr\",\ndata: \"data\":\"b29wcwo=\"}\n\n" +
		"id: 7\nretry: 10\n\n" + // an event without data is skipped
		"data: {\"type\":\"exit\",\"exitCode\":3,\"timedOut\":true}" // no blank line before EOF
	r := newSSEReader(strings.NewReader(stream))
	want := []streamEvent{
		{Type: "start", PID: 42},
		{Type: "stdout", Data: []byte("hello\n")},
		{Type: "stderr", Data: []byte("oops\n")},
		{Type: "exit", ExitCode: ptr(3), TimedOut: true},
	}
	for i, w := range want {
		got, err := r.nextEvent()
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if got.Type != w.Type || got.PID != w.PID || string(got.Data) != string(w.Data) || got.TimedOut != w.TimedOut ||
			(w.ExitCode != nil && (got.ExitCode == nil || *got.ExitCode != *w.ExitCode)) {
			t.Fatalf("event %d = %+v, want %+v", i, got, w)
		}
	}
	if _, err := r.nextEvent(); err != io.EOF {
		t.Fatalf("after the last event: %v, want io.EOF", err)
	}
}

func TestSSEReaderLongLine(t *testing.T) {
	long := strings.Repeat("x", 300<<10)
	r := newSSEReader(strings.NewReader("data: " + long + "\n\n"))
	got, err := r.next()
	if err != nil || string(got) != long {
		t.Fatalf("long line: %d bytes, %v", len(got), err)
	}
}

func TestCollect(t *testing.T) {
	var out, errOut strings.Builder
	stream := "data: {\"type\":\"start\",\"pid\":9}\n\n" +
		"data: {\"type\":\"stdout\",\"data\":\"b25lCg==\"}\n\n" +
		"data: {\"type\":\"stderr\",\"data\":\"dHdvCg==\"}\n\n" +
		"data: {\"type\":\"exit\",\"exitCode\":0}\n\n"
	res, err := collect("run", strings.NewReader(stream),
		func(b []byte) { out.Write(b) }, func(b []byte) { errOut.Write(b) })
	if err != nil {
		t.Fatal(err)
	}
	if res.PID != 9 || res.Stdout != "one\n" || res.Stderr != "two\n" || res.ExitCode != 0 {
		t.Fatalf("result %+v", res)
	}
	if out.String() != "one\n" || errOut.String() != "two\n" {
		t.Fatalf("callbacks got %q and %q", out.String(), errOut.String())
	}

	_, err = collect("run", strings.NewReader("data: {\"type\":\"error\",\"error\":\"agent died\",\"code\":\"agent_unreachable\"}\n\n"), nil, nil)
	if e, ok := err.(*Error); !ok || e.Code != "agent_unreachable" || e.Message != "agent died" {
		t.Fatalf("error event: %#v", err)
	}
	_, err = collect("run", strings.NewReader("data: {\"type\":\"stdout\",\"data\":\"eA==\"}\n\n"), nil, nil)
	if e, ok := err.(*Error); !ok || e.Code != CodeStream {
		t.Fatalf("stream cut before exit: %#v", err)
	}
}

func ptr[T any](v T) *T { return &v }
