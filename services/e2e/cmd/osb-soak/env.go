package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/opensandbox/opensandbox/services/e2e/load"
	"github.com/opensandbox/opensandbox/services/e2e/serverproc"
	"github.com/opensandbox/opensandbox/services/shared/pgtest"
)

// environment is what the soak runs against, all of it its own: a Podman
// service on its own socket, PostgreSQL, NATS and the combined server.
type environment struct {
	root, dir string
	runDir    string // the Podman service's
	pg        *pgtest.Server
	dsn       string
	natsBin   string
	natsPort  int
	nats      *exec.Cmd
	srv       *serverproc.Server
	networks  int // Podman networks before the run
}

func setUp(ctx context.Context) (*environment, error) {
	root, err := serverproc.RepoRoot()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "osb-soak-")
	if err != nil {
		return nil, err
	}
	e := &environment{root: root, dir: dir, runDir: filepath.Join(dir, "run")}
	ok := false
	defer func() {
		if !ok {
			e.tearDown()
		}
	}()
	step("building the server, the agent and osb-nats")
	bins, err := serverproc.Build(dir)
	if err != nil {
		return nil, err
	}
	e.natsBin = filepath.Join(dir, "osb-nats")
	if out, err := goBuild(root, e.natsBin, "./services/controlplane/cmd/osb-nats"); err != nil {
		return nil, fmt.Errorf("build osb-nats: %w\n%s", err, out)
	}
	step("starting a Podman service of its own")
	if err := e.podman("start"); err != nil {
		return nil, err
	}
	e.networks = countLines("podman", "network", "ls", "-q")
	step("starting PostgreSQL")
	if e.pg, err = pgtest.Start(); err != nil {
		return nil, fmt.Errorf("postgresql: %w", err)
	}
	if e.dsn, err = e.pg.CreateDatabase(ctx); err != nil {
		return nil, err
	}
	step("starting NATS JetStream")
	if e.natsPort, err = freePort(); err != nil {
		return nil, err
	}
	if err := e.startNATS(); err != nil {
		return nil, err
	}
	step("starting the combined server with PostgreSQL")
	e.srv, err = serverproc.Start(ctx, bins, serverproc.Options{Dir: dir, Env: []string{
		"OPENSANDBOX_PODMAN_URI=unix://" + filepath.Join(e.runDir, "podman.sock"),
		"DATABASE_URL=" + e.dsn,
		"NATS_URL=" + e.natsURL(),
		"OPENSANDBOX_CAPACITY=200",
	}})
	if err != nil {
		return nil, err
	}
	ok = true
	return e, nil
}

func step(msg string) { fmt.Println("==>", msg) }

func goBuild(root, out, pkg string) ([]byte, error) {
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	return cmd.CombinedOutput()
}

func (e *environment) tearDown() {
	if e.srv != nil {
		e.srv.Stop()
	}
	if e.nats != nil && e.nats.Process != nil {
		e.nats.Process.Kill()
		e.nats.Wait()
	}
	if e.pg != nil {
		e.pg.Stop()
	}
	e.podman("stop")
	os.RemoveAll(e.dir)
}

// podman starts or stops the soak's Podman service with the project's script.
func (e *environment) podman(verb string) error {
	cmd := exec.Command(filepath.Join(e.root, "scripts", "podman-service.sh"), verb)
	cmd.Env = append(os.Environ(), "OPENSANDBOX_RUN_DIR="+e.runDir)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("podman service %s: %w\n%s", verb, err, out)
	}
	return nil
}

func (e *environment) natsURL() string { return "nats://127.0.0.1:" + strconv.Itoa(e.natsPort) }

func (e *environment) startNATS() error {
	log, err := os.OpenFile(filepath.Join(e.dir, "nats.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(e.natsBin, "-port", strconv.Itoa(e.natsPort), "-store", filepath.Join(e.dir, "nats"))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return err
	}
	e.nats = cmd
	for range 100 {
		if c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(e.natsPort)); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("NATS did not start")
}

// killServer SIGKILLs the server and starts it again on the same data.
func (e *environment) killServer(ctx context.Context) (string, error) {
	e.srv.Kill()
	time.Sleep(time.Second)
	began := time.Now()
	if err := e.srv.Restart(ctx); err != nil {
		return "", err
	}
	return fmt.Sprintf("healthy %s after the restart", time.Since(began).Round(100*time.Millisecond)), nil
}

// restartPodman stops the Podman service and starts it again; containers
// live on under conmon.
func (e *environment) restartPodman(context.Context) (string, error) {
	if err := e.podman("stop"); err != nil {
		return "", err
	}
	time.Sleep(2 * time.Second)
	if err := e.podman("start"); err != nil {
		return "", err
	}
	return "restarted", nil
}

// pauseNATS stops the event pipeline's NATS for 10 s.
func (e *environment) pauseNATS(context.Context) (string, error) {
	e.nats.Process.Signal(os.Interrupt)
	e.nats.Wait()
	time.Sleep(10 * time.Second)
	if err := e.startNATS(); err != nil {
		return "", err
	}
	return "stopped 10 s, started again", nil
}

// commandRows waits for the syncer and compares, per sandbox, the commands
// answered with the rows in command_logs: at least every answered one, at
// most those plus the ones whose answer a fault cut off. extra describes
// any sandbox outside that range ("" when all hold).
func (e *environment) commandRows(ctx context.Context, rep *load.Report, ids map[string]bool) (total int, extra string, err error) {
	conn, err := pgx.Connect(ctx, e.dsn)
	if err != nil {
		return 0, "", err
	}
	defer conn.Close(ctx)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		rows, err := conn.Query(ctx, `SELECT sandbox_id, count(*) FROM command_logs GROUP BY sandbox_id`)
		if err != nil {
			return 0, "", err
		}
		got := map[string]int{}
		total = 0
		for rows.Next() {
			var id string
			var n int
			if err := rows.Scan(&id, &n); err != nil {
				return 0, "", err
			}
			got[id] = n
			total += n
		}
		if err := rows.Err(); err != nil {
			return 0, "", err
		}
		var bad []string
		for id := range ids {
			lo, hi := rep.Commands[id], rep.Commands[id]+rep.Unsure[id]
			if got[id] < lo || got[id] > hi {
				bad = append(bad, fmt.Sprintf("%s: %d rows, want %d..%d", id, got[id], lo, hi))
			}
		}
		if len(bad) == 0 {
			return total, "", nil
		}
		if time.Now().After(deadline) {
			return total, strings.Join(bad, "; "), nil
		}
		time.Sleep(time.Second)
	}
}

// leaks waits for the server to finish its removals and the publisher to
// send the last events, then reports containers, sandbox directories
// (SQLite files) and processes of this worker left behind, and
// Podman networks added.
func (e *environment) leaks(ctx context.Context, ids map[string]bool) string {
	var found []string
	deadline := time.Now().Add(2 * time.Minute)
	for {
		found = found[:0]
		if n := countLines("podman", "ps", "-a", "-q", "--filter", "label=opensandbox.worker="+e.srv.WorkerID); n > 0 {
			found = append(found, fmt.Sprintf("%d containers", n))
		}
		if ents, _ := os.ReadDir(filepath.Join(e.srv.DataDir, "sandboxes")); len(ents) > 0 {
			found = append(found, fmt.Sprintf("%d sandbox directories", len(ents)))
		}
		if n := conmons(ids); n > 0 {
			found = append(found, fmt.Sprintf("%d conmon processes (with their agents)", n))
		}
		if n := countLines("podman", "network", "ls", "-q"); n > e.networks {
			found = append(found, fmt.Sprintf("%d networks", n-e.networks))
		}
		if len(found) == 0 {
			return "none"
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return strings.Join(found, ", ")
		}
		time.Sleep(time.Second)
	}
}

// conmons counts the conmon processes (each the parent of a sandbox's
// agent) still running for the given sandboxes.
func conmons(ids map[string]bool) int {
	ents, _ := os.ReadDir("/proc")
	n := 0
	for _, ent := range ents {
		cmdline, err := os.ReadFile("/proc/" + ent.Name() + "/cmdline")
		if err != nil || !strings.Contains(string(cmdline), "conmon") {
			continue
		}
		for _, arg := range strings.Split(string(cmdline), "\x00") {
			if id, ok := strings.CutPrefix(arg, "osb-"); ok && ids[id] {
				n++
				break
			}
		}
	}
	return n
}

func countLines(name string, args ...string) int {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return -1
	}
	n := 0
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) != "" {
			n++
		}
	}
	return n
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
