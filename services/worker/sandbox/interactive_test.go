package sandbox_test

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/shared/errs"
	"github.com/opensandbox/opensandbox/services/shared/events"
	"github.com/opensandbox/opensandbox/services/worker/internal/sandboxdb"
)

// The Manager-level terminal API as the gRPC PTYStream uses it, and what a
// session leaves in the sandbox's SQLite.
func TestPTYThroughManagerIsRecorded(t *testing.T) {
	m, _, cfg := newManager(t)
	ctx := context.Background()
	sb := mustCreate(t, m, api.SandboxConfig{})
	ps, err := m.CreatePTY(ctx, sb.SandboxID, api.PTYConfig{Cols: 50, Rows: 10})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := m.AttachPTY(ctx, sb.SandboxID, ps.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Resize(70, 12); err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte("stty size; exit 4\n"))
	out, err := io.ReadAll(conn) // until the shell exits
	if err != nil {
		t.Fatal(err)
	}
	code, exited := conn.ExitCode()
	if !exited || code != 4 || !strings.Contains(string(out), "12 70") {
		t.Fatalf("exit %d %v, output %q", code, exited, out)
	}

	db, err := sandboxdb.Open(filepath.Join(cfg.DataDir, "sandboxes", sb.SandboxID, "sandbox.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	eventually(t, 5*time.Second, "pty_end recorded", func() bool {
		rows, _ := db.PTYSessions(ctx)
		return len(rows) == 1 && !rows[0].EndedAt.IsZero()
	})
	rows, _ := db.PTYSessions(ctx)
	if r := rows[0]; r.ID != ps.SessionID || r.BytesIn != 18 || r.BytesOut < int64(len(out)) {
		t.Fatalf("row %+v (output %d bytes)", r, len(out))
	}
	evs, _ := db.Unsynced(ctx, 100)
	var got []events.Event
	for _, e := range evs {
		if e.Type == events.TypePTYStart || e.Type == events.TypePTYEnd {
			ev, _ := events.Unmarshal(e.Payload)
			got = append(got, ev)
		}
	}
	if len(got) != 2 || got[0].Type != "pty_start" || got[1].Type != "pty_end" || got[1].PTY.SessionID != ps.SessionID ||
		got[1].PTY.BytesIn != 18 || got[1].PTY.EndedAt == nil || got[0].SandboxID != sb.SandboxID {
		t.Fatalf("pty events %+v", got)
	}
	if _, err := m.AttachPTY(ctx, sb.SandboxID, "0123abcd"); !errors.Is(err, errs.New(errs.KindNotFound, "pty_not_found", "")) {
		t.Fatalf("attach to an unknown session: %v", err)
	}
	for _, bad := range []string{"..", "../processes", "a/b", "ABC", ""} {
		if err := m.PTYExists(ctx, sb.SandboxID, bad); !errors.Is(err, errs.New(errs.KindNotFound, "pty_not_found", "")) {
			t.Errorf("session id %q: %v", bad, err)
		}
	}
}

// ExecStream as the gRPC ExecCommandStream uses it: events in order, the
// run logged as a command; an error from emit stops and kills the process.
func TestExecStreamThroughManager(t *testing.T) {
	m, _, _ := newManager(t)
	ctx := context.Background()
	sb := mustCreate(t, m, api.SandboxConfig{})
	var types []string
	var stdout strings.Builder
	err := m.ExecStream(ctx, sb.SandboxID, api.ProcessConfig{Cmd: "echo a; echo b >&2; exit 2"}, func(ev api.ProcessEvent) error {
		types = append(types, ev.Type)
		if ev.Type == api.EventStdout {
			stdout.Write(ev.Data)
		}
		return nil
	})
	if err != nil || types[0] != "start" || types[len(types)-1] != "exit" || stdout.String() != "a\n" {
		t.Fatalf("err %v, events %v, stdout %q", err, types, stdout.String())
	}
	stop := errors.New("enough")
	var pid int
	err = m.ExecStream(ctx, sb.SandboxID, api.ProcessConfig{Cmd: "sleep 6301"}, func(ev api.ProcessEvent) error {
		pid = ev.PID
		return stop
	})
	if !errors.Is(err, stop) || pid == 0 {
		t.Fatalf("err %v pid %d", err, pid)
	}
	eventually(t, 5*time.Second, "stopped stream's process killed", func() bool {
		list, err := m.Processes(ctx, sb.SandboxID)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range list {
			if p.PID == pid {
				return !p.Running
			}
		}
		return false
	})
	if _, err := m.WatchDir(ctx, sb.SandboxID, "/no/such", false); !errors.Is(err, errs.ErrFileNotFound) {
		t.Fatalf("watch of a missing path: %v", err)
	}
}
