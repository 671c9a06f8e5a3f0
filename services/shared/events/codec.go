package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/proto/eventsv1"
	"google.golang.org/protobuf/proto"
)

// Marshal encodes ev as it travels from a worker's SQLite through
// JetStream to the syncer: protocol buffers (proto/events.proto), the
// cheapest form for the syncer to decode.
func Marshal(ev Event) ([]byte, error) {
	m := &eventsv1.Event{
		Id: ev.ID, Type: ev.Type, SandboxId: ev.SandboxID, OrgId: ev.OrgID,
		WorkerId: ev.WorkerID, Region: ev.Region, TimeUnixNano: unixNano(ev.Time), Error: ev.Error,
	}
	if s := ev.Sandbox; s != nil {
		m.Sandbox = &eventsv1.Sandbox{Template: s.Template, CpuCount: int32(s.CPUCount), MemoryMb: int32(s.MemoryMB),
			TimeoutS: int32(s.TimeoutS), Metadata: s.Metadata, StartedAtUnixNano: unixNano(s.StartedAt)}
	}
	if c := ev.Command; c != nil {
		m.Command = &eventsv1.Command{Command: c.Command, Args: c.Args, Cwd: c.Cwd, ExitCode: int32(c.ExitCode),
			DurationMs: c.DurationMs, StdoutLen: int64(c.StdoutLen), StderrLen: int64(c.StderrLen)}
	}
	if p := ev.PTY; p != nil {
		m.Pty = &eventsv1.PTY{SessionId: p.SessionID, StartedAtUnixNano: unixNano(p.StartedAt), BytesIn: p.BytesIn, BytesOut: p.BytesOut}
		if p.EndedAt != nil {
			end := unixNano(*p.EndedAt)
			m.Pty.EndedAtUnixNano = &end
		}
	}
	return proto.Marshal(m)
}

// Unmarshal decodes an event written by Marshal, or the JSON form that
// earlier versions recorded (rows still in a worker's SQLite after an
// upgrade), and checks the fields every event has.
func Unmarshal(b []byte) (Event, error) {
	var ev Event
	if len(b) > 0 && b[0] == '{' {
		// A protobuf Event never starts with '{' (0x7b: field 15,
		// wire type 3, which it does not have).
		if err := json.Unmarshal(b, &ev); err != nil {
			return Event{}, fmt.Errorf("decode event: %w", err)
		}
	} else {
		var m eventsv1.Event
		if err := proto.Unmarshal(b, &m); err != nil {
			return Event{}, fmt.Errorf("decode event: %w", err)
		}
		ev = fromProto(&m)
	}
	if ev.ID == "" || ev.Type == "" || ev.SandboxID == "" || ev.Time.IsZero() {
		return Event{}, errors.New("event lacks id, type, sandboxID or time")
	}
	return ev, nil
}

func fromProto(m *eventsv1.Event) Event {
	ev := Event{ID: m.Id, Type: m.Type, SandboxID: m.SandboxId, OrgID: m.OrgId, WorkerID: m.WorkerId,
		Region: m.Region, Time: fromUnixNano(m.TimeUnixNano), Error: m.Error}
	if s := m.Sandbox; s != nil {
		ev.Sandbox = &SandboxData{Template: s.Template, CPUCount: int(s.CpuCount), MemoryMB: int(s.MemoryMb),
			TimeoutS: int(s.TimeoutS), Metadata: s.Metadata, StartedAt: fromUnixNano(s.StartedAtUnixNano)}
	}
	if c := m.Command; c != nil {
		ev.Command = &CommandData{Command: c.Command, Args: c.Args, Cwd: c.Cwd, ExitCode: int(c.ExitCode),
			DurationMs: c.DurationMs, StdoutLen: int(c.StdoutLen), StderrLen: int(c.StderrLen)}
	}
	if p := m.Pty; p != nil {
		ev.PTY = &PTYData{SessionID: p.SessionId, StartedAt: fromUnixNano(p.StartedAtUnixNano), BytesIn: p.BytesIn, BytesOut: p.BytesOut}
		if p.EndedAtUnixNano != nil {
			end := fromUnixNano(*p.EndedAtUnixNano)
			ev.PTY.EndedAt = &end
		}
	}
	return ev
}

// unixNano keeps the zero time zero (its UnixNano is undefined).
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// EventsHeader names how many events a message of the event stream holds.
// A message without it is one JSON event published by an earlier version.
const EventsHeader = "Osb-Events"

// MarshalBatch packs encoded events (Marshal's output, as stored) into the
// body of one message.
func MarshalBatch(encoded [][]byte) []byte {
	b, _ := proto.Marshal(&eventsv1.Batch{Events: encoded}) // bytes fields cannot fail
	return b
}

// UnmarshalBatch unpacks a message body into its encoded events and checks
// that it holds as many as its EventsHeader said.
func UnmarshalBatch(b []byte, want int) ([][]byte, error) {
	var m eventsv1.Batch
	if err := proto.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("decode event batch: %w", err)
	}
	if len(m.Events) != want || want == 0 {
		return nil, fmt.Errorf("event batch holds %d events, its header says %d", len(m.Events), want)
	}
	return m.Events, nil
}

// BatchID is the JetStream message id (Nats-Msg-Id) of a message holding n
// events starting with the one whose id is first: the event's own id when
// it travels alone. A batch re-sent with the same events after a crash gets
// the same id, so JetStream drops the copy; the syncer writes each event
// once by its own id in any case.
func BatchID(first string, n int) string {
	if n == 1 {
		return first
	}
	return first + "+" + strconv.Itoa(n)
}
