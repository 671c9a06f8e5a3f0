package events

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestMarshalRoundTripsEveryEventType(t *testing.T) {
	at := time.Date(2026, 11, 28, 15, 4, 5, 123456789, time.UTC)
	end := at.Add(time.Minute)
	base := Event{ID: NewID(), SandboxID: "sb-1", OrgID: "org-1", WorkerID: "w-1", Region: "eu", Time: at}
	for _, ev := range []Event{
		with(base, TypeCreated, func(e *Event) {
			e.Sandbox = &SandboxData{Template: "base", CPUCount: 2, MemoryMB: 512, TimeoutS: 300, Metadata: map[string]string{"k": "v"}, StartedAt: at}
		}),
		with(base, TypeCommand, func(e *Event) {
			e.Command = &CommandData{Command: "ls", Args: []string{"-l", "/"}, Cwd: "/tmp", ExitCode: 2, DurationMs: 7, StdoutLen: 10, StderrLen: 3}
		}),
		with(base, TypePTYStart, func(e *Event) { e.PTY = &PTYData{SessionID: "p1", StartedAt: at} }),
		with(base, TypePTYEnd, func(e *Event) {
			e.PTY = &PTYData{SessionID: "p1", StartedAt: at, EndedAt: &end, BytesIn: 5, BytesOut: 6}
		}),
		with(base, TypeTimeout, nil),
		with(base, TypeKilled, nil),
		with(base, TypeError, func(e *Event) { e.Error = "boom" }),
	} {
		b, err := Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Unmarshal(b)
		if err != nil {
			t.Fatalf("%s: %v", ev.Type, err)
		}
		if !reflect.DeepEqual(got, ev) {
			t.Fatalf("%s: round trip\n got %+v\nwant %+v", ev.Type, got, ev)
		}
	}
}

func with(ev Event, typ string, f func(*Event)) Event {
	ev.Type = typ
	if f != nil {
		f(&ev)
	}
	return ev
}

// Rows recorded as JSON by earlier versions still decode after an upgrade.
func TestUnmarshalReadsLegacyJSON(t *testing.T) {
	ev := Event{ID: "e1", Type: TypeCommand, SandboxID: "sb", WorkerID: "w", Time: time.Unix(1700000000, 5).UTC(),
		Command: &CommandData{Command: "true", ExitCode: 0}}
	b, _ := json.Marshal(ev)
	got, err := Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, ev) {
		t.Fatalf("got %+v, want %+v", got, ev)
	}
}

func TestUnmarshalRejectsBadEvents(t *testing.T) {
	incomplete, _ := Marshal(Event{ID: "e1", Type: TypeCommand, Time: time.Now()}) // no sandbox
	for name, b := range map[string][]byte{
		"empty":      nil,
		"garbage":    []byte{0xff, 0xff, 0xff},
		"bad json":   []byte(`{"id":`),
		"incomplete": incomplete,
		"json no id": []byte(`{"type":"command","sandboxID":"s","time":"2026-01-01T00:00:00Z"}`),
	} {
		if _, err := Unmarshal(b); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

func BenchmarkUnmarshal(b *testing.B) {
	ev := Event{ID: NewID(), Type: TypeCommand, SandboxID: "sb-0001", WorkerID: "worker-1", Region: "local", Time: time.Now(),
		Command: &CommandData{Command: "python3", Args: []string{"-c", "print(1)"}, Cwd: "/home/user", DurationMs: 12, StdoutLen: 2}}
	pb, _ := Marshal(ev)
	js, _ := json.Marshal(ev)
	b.Run("proto", func(b *testing.B) {
		for b.Loop() {
			Unmarshal(pb)
		}
	})
	b.Run("json", func(b *testing.B) {
		for b.Loop() {
			Unmarshal(js)
		}
	})
}

func TestBoundKeepsEventsSmall(t *testing.T) {
	huge := strings.Repeat("é", 1<<20) // 2 MiB of two-byte runes
	args := make([]string, 1000)
	for i := range args {
		args[i] = huge
	}
	ev := Event{ID: NewID(), Type: TypeCommand, SandboxID: "s", WorkerID: "w", Time: time.Now(), Error: huge,
		Command: &CommandData{Command: huge, Args: args, Cwd: huge}}
	ev.Bound()
	if args[0] != huge {
		t.Fatal("Bound changed the caller's arguments")
	}
	b, err := Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 300<<10 {
		t.Fatalf("bounded event is %d bytes", len(b))
	}
	c := ev.Command
	if len(c.Args) != MaxArgs || c.Args[MaxArgs-1] != "… (937 more arguments)" {
		t.Fatalf("%d args, last %.40q", len(c.Args), c.Args[len(c.Args)-1])
	}
	for _, s := range append([]string{ev.Error, c.Command, c.Cwd}, c.Args[:MaxArgs-1]...) {
		if len(s) > MaxTextBytes || !utf8.ValidString(s) || !strings.HasSuffix(s, "…") {
			t.Fatalf("cut to %d bytes, valid UTF-8 %v, ends %q", len(s), utf8.ValidString(s), s[len(s)-8:])
		}
	}
	short := Event{Command: &CommandData{Command: "ls", Args: []string{"-l"}}}
	short.Bound()
	if short.Command.Command != "ls" || len(short.Command.Args) != 1 || short.Command.Args[0] != "-l" {
		t.Fatalf("a short command changed: %+v", short.Command)
	}
}
