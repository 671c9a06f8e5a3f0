package sandboxdb

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkLogCommand is the command log's cost per command: one row and
// its event in one transaction, as every exec writes.
func BenchmarkLogCommand(b *testing.B) {
	db, err := Open(filepath.Join(b.TempDir(), "sandbox.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	payload := make([]byte, 120)
	i := 0
	for b.Loop() {
		i++
		c := Command{Command: "echo hello", Args: []string{"a"}, Cwd: "/root", DurationMs: 1, StdoutLen: 6, CreatedAt: time.Now()}
		if err := db.LogCommand(ctx, c, Event{ID: fmt.Sprintf("ev-%d", i), Type: "command", Payload: payload, CreatedAt: time.Now()}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishScan is the publisher's per-batch cost: read the unsynced
// events (up to 250) and mark them synced.
func BenchmarkPublishScan(b *testing.B) {
	db, err := Open(filepath.Join(b.TempDir(), "sandbox.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	payload := make([]byte, 120)
	n := 0
	for b.Loop() {
		b.StopTimer()
		for range 50 {
			n++
			db.AddEvent(ctx, Event{ID: fmt.Sprintf("ev-%d", n), Type: "command", Payload: payload, CreatedAt: time.Now()})
		}
		b.StartTimer()
		evs, err := db.Unsynced(ctx, 250)
		if err != nil || len(evs) != 50 {
			b.Fatalf("%d events, %v", len(evs), err)
		}
		seqs := make([]int64, len(evs))
		for i, e := range evs {
			seqs[i] = e.Seq
		}
		if err := db.MarkSynced(ctx, seqs); err != nil {
			b.Fatal(err)
		}
	}
}
