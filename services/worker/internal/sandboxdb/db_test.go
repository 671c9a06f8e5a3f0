package sandboxdb

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// Stored times sort as text in time order, so Backlog's min(created_at) is
// the oldest event: RFC3339Nano would put "…:00.12Z" before "…:00.1Z" and
// both before "…:00Z".
func TestBacklogOldestIsTheEarliestEvent(t *testing.T) {
	ctx := context.Background()
	db, err := Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i, d := range []time.Duration{120 * time.Millisecond, 100 * time.Millisecond, 0, time.Second} {
		ev := Event{ID: string(rune('a' + i)), Type: "command", Payload: []byte(`{}`), CreatedAt: base.Add(d)}
		if err := db.AddEvent(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	n, oldest, err := db.Backlog(ctx)
	if err != nil || n != 4 || !oldest.Equal(base) {
		t.Fatalf("backlog %d, oldest %s (%v); want 4, %s", n, oldest, err, base)
	}
	// Times keep their nanoseconds through a round trip.
	evs, err := db.Unsynced(ctx, 10)
	if err != nil || len(evs) != 4 || !evs[0].CreatedAt.Equal(base.Add(120*time.Millisecond)) {
		t.Fatalf("unsynced %+v %v", evs, err)
	}
}

// Rows written by older versions (RFC3339Nano) are still read.
func TestOldTimeFormatIsRead(t *testing.T) {
	ctx := context.Background()
	db, err := Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	at := time.Date(2025, 6, 7, 8, 9, 10, 500_000_000, time.UTC)
	if _, err := db.sql.ExecContext(ctx, `INSERT INTO events(event_id, type, payload, created_at) VALUES('old', 'command', '{}', ?)`, at.Format(time.RFC3339Nano)); err != nil {
		t.Fatal(err)
	}
	evs, err := db.Unsynced(ctx, 10)
	if err != nil || len(evs) != 1 || !evs[0].CreatedAt.Equal(at) {
		t.Fatalf("old row read as %+v %v", evs, err)
	}
	if _, oldest, err := db.Backlog(ctx); err != nil || !oldest.Equal(at) {
		t.Fatalf("backlog oldest %s %v", oldest, err)
	}
}
