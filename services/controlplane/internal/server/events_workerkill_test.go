package server

import (
	"context"
	"database/sql"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/worker/sandboxtest"
	_ "modernc.org/sqlite"
)

// A real worker process is killed with SIGKILL while commands run, then
// started again on the same data: every event its sandbox recorded reaches
// PostgreSQL exactly once (counted against the sandbox's own SQLite).
func TestWorkerSIGKILLLosesNoEvents(t *testing.T) {
	c := startCluster(t, func(cfg *Config) { cfg.RunSyncer = true })
	bin := workerBinary(t)
	id := "evkill-" + sandboxtest.RandomID()
	dataDir := killedWorkerDir(t, id)
	httpPort, grpcPort := freePort(t), freePort(t)
	worker := startWorkerProcess(t, c, bin, id, dataDir, httpPort, grpcPort)
	c.waitWorker(t, id, true)

	var sb api.Sandbox
	c.cp.json(t, "POST", "/sandboxes", api.SandboxConfig{TemplateID: "busybox"}, 201, &sb)
	// run posts a command straight to the worker with the sandbox token.
	run := func(cmd string) int {
		req, _ := http.NewRequest("POST", sb.ConnectURL+"/sandboxes/"+sb.SandboxID+"/commands", strings.NewReader(`{"cmd":"`+cmd+`"}`))
		req.Header.Set("Authorization", "Bearer "+sb.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}

	// Four clients run commands until the worker dies under them.
	var ran atomic.Int64
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				if run("echo "+strconv.Itoa(g*10000+i)) != 200 {
					return
				}
				ran.Add(1)
			}
		}()
	}
	sandboxtest.Eventually(t, 20*time.Second, "commands running", func() bool { return ran.Load() >= 40 })
	worker.Process.Signal(syscall.SIGKILL)
	worker.Wait()
	wg.Wait()

	startWorkerProcess(t, c, bin, id, dataDir, httpPort, grpcPort)
	sandboxtest.Eventually(t, 30*time.Second, "restarted worker serves the sandbox", func() bool {
		return run("echo after") == 200
	})

	db, err := sql.Open("sqlite", "file:"+filepath.Join(dataDir, "sandboxes", sb.SandboxID, "sandbox.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	local := func(q string) int {
		var n int
		if err := db.QueryRow(q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	remote := func() int {
		var n int
		err := c.st.Pool().QueryRow(context.Background(),
			`SELECT (SELECT count(*) FROM command_logs WHERE sandbox_id = $1) + (SELECT count(*) FROM sandbox_events WHERE sandbox_id = $1)`, sb.SandboxID).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	sandboxtest.Eventually(t, 30*time.Second, "every recorded event synced and in PostgreSQL", func() bool {
		return local(`SELECT count(*) FROM events WHERE synced = 0`) == 0 && remote() == local(`SELECT count(*) FROM events`)
	})
	produced := local(`SELECT count(*) FROM events`)
	resp, err := http.Get(sb.ConnectURL + "/health")
	if err != nil {
		t.Fatal(err)
	}
	health, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(health), `"publisher":{"unsynced":`) {
		t.Fatalf("worker health lacks the publisher backlog: %s", health)
	}
	if cmds := local(`SELECT count(*) FROM events WHERE type = 'command'`); int64(cmds) < ran.Load()+1 {
		t.Fatalf("%d command events recorded, but %d commands answered 200", cmds, ran.Load()+1)
	}
	time.Sleep(500 * time.Millisecond) // anything late would be a duplicate
	if got := remote(); got != produced {
		t.Fatalf("PostgreSQL holds %d rows for %d events", got, produced)
	}
	t.Logf("%d events (%d commands answered before the kill) reached PostgreSQL once", produced, ran.Load())
	c.cp.json(t, "DELETE", "/sandboxes/"+sb.SandboxID, nil, 204, nil)
}
