package sandboxdb

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

func TestPTYSessions(t *testing.T) {
	ctx := context.Background()
	db, err := Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	start := time.Now().UTC().Truncate(time.Millisecond)
	ev := func(id, typ string) Event {
		return Event{ID: id, Type: typ, Payload: []byte(`{}`), CreatedAt: start}
	}
	if err := db.StartPTY(ctx, PTYSession{ID: "a", StartedAt: start}, ev("e1", "pty_start")); err != nil {
		t.Fatal(err)
	}
	end := start.Add(time.Second)
	ok, err := db.EndPTY(ctx, PTYSession{ID: "a", EndedAt: end, BytesIn: 3, BytesOut: 40}, ev("e2", "pty_end"))
	if err != nil || !ok {
		t.Fatalf("end: %v %v", ok, err)
	}
	// Ending twice changes nothing and adds no second event.
	ok, err = db.EndPTY(ctx, PTYSession{ID: "a", EndedAt: end.Add(time.Hour), BytesIn: 99}, ev("e3", "pty_end"))
	if err != nil || ok {
		t.Fatalf("second end: %v %v", ok, err)
	}
	rows, err := db.PTYSessions(ctx)
	if err != nil || len(rows) != 1 {
		t.Fatalf("rows %v %v", rows, err)
	}
	if r := rows[0]; !r.StartedAt.Equal(start) || !r.EndedAt.Equal(end) || r.BytesIn != 3 || r.BytesOut != 40 {
		t.Fatalf("row %+v", r)
	}
	if n, _ := db.CountUnsynced(ctx); n != 2 {
		t.Fatalf("%d events, want pty_start and one pty_end", n)
	}
}
