// Command osb-soak runs a combined server with PostgreSQL under mixed load
// for minutes while faults hit it — the server SIGKILLed and restarted, the
// Podman service restarted, an agent killed, the event pipeline's NATS
// stopped for 10 s — and then does the accounting: every answer intact,
// every command answered is one row in PostgreSQL, nothing leaked, the
// server's memory back in its band. `make soak` runs it; it prints a table.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	osb "github.com/opensandbox/opensandbox/sdks/go"
	"github.com/opensandbox/opensandbox/services/e2e/load"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "osb-soak:", err)
		os.Exit(1)
	}
}

type options struct {
	duration  time.Duration
	sandboxes int
	threads   int
	template  string
}

func run() error {
	var o options
	flag.DurationVar(&o.duration, "duration", 10*time.Minute, "how long the load runs")
	flag.IntVar(&o.sandboxes, "sandboxes", 20, "sandboxes kept busy at once")
	flag.IntVar(&o.threads, "threads", 4, "client threads per sandbox")
	flag.StringVar(&o.template, "template", "busybox", "template of the sandboxes")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	env, err := setUp(ctx)
	if err != nil {
		return err
	}
	defer env.tearDown()
	s := &soak{env: env, opts: o, rep: load.NewReport(), ids: map[string]bool{}, ended: map[string]bool{}}
	return s.run(ctx)
}

// soak is one run: its environment, its sandboxes and what it counted.
type soak struct {
	env  *environment
	opts options

	mu      sync.Mutex
	sbxs    []*osb.Sandbox
	ids     map[string]bool // every sandbox created
	ended   map[string]bool // sandboxes killed by churn or the agent fault
	rep     *load.Report
	faults  []faultRecord
	creates int
	kills   int

	// The fault in progress: which errors it explains, and how many it did.
	faultMu sync.Mutex
	fault   *faultRecord
}

type faultRecord struct {
	name     string
	at       time.Duration
	outage   time.Duration
	outcome  string
	explains func(error) bool // errors this fault may cause
	errors   int              // errors it explained
	sample   string
}

// transportOrUnavailable: the server could not be reached or said so.
func transportOrUnavailable(err error) bool {
	var e *osb.Error
	return errors.As(err, &e) && (e.Code == osb.CodeTransport || e.Code == osb.CodeStream || e.Status == 503 || e.Status == 502)
}

func anyError(error) bool { return true }
func noError(error) bool  { return false }

func (s *soak) run(ctx context.Context) error {
	client := load.NewClient(s.env.srv.URL, s.env.srv.APIKey, s.opts.sandboxes*s.opts.threads)
	sbxs, err := load.CreateSandboxes(ctx, client, s.opts.sandboxes, s.opts.template)
	if err != nil {
		return fmt.Errorf("create sandboxes: %w", err)
	}
	s.sbxs = sbxs
	for _, b := range sbxs {
		s.ids[b.ID()] = true
	}
	s.creates = len(sbxs)
	// The server's memory band is taken after a first round of load.
	warm := load.Run(ctx, load.Options{Sandboxes: sbxs, Threads: s.opts.threads, PerThread: 5, Mix: load.MixedMix})
	s.rep.Add(warm)
	time.Sleep(2 * time.Second)
	rssStart, _ := s.env.srv.RSS()
	fmt.Printf("soak: %d sandboxes × %d threads for %s; server RSS after warm-up %d MiB\n",
		s.opts.sandboxes, s.opts.threads, s.opts.duration, rssStart>>20)

	start := time.Now()
	lctx, cancel := context.WithTimeout(ctx, s.opts.duration)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.injectFaults(lctx, start) }()
	go func() { defer wg.Done(); s.churn(lctx, client) }()
	for lctx.Err() == nil {
		rep := load.Run(lctx, load.Options{
			Sandboxes: s.current(), Threads: s.opts.threads, PerThread: 10, Mix: load.MixedMix,
			OpTimeout: 2 * time.Minute, Tolerate: s.tolerate,
		})
		s.mu.Lock()
		s.rep.Add(rep)
		s.mu.Unlock()
		for _, f := range rep.Failures {
			fmt.Println("WRONG ANSWER:", f)
		}
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return s.account(context.Background(), client, rssStart)
}

// current returns the sandboxes to load now.
func (s *soak) current() []*osb.Sandbox {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*osb.Sandbox(nil), s.sbxs...)
}

// tolerate accepts an SDK error when a fault explains it: the server or
// Podman is being restarted, or the sandbox was killed (by churn or the
// agent fault) while the operation ran. Wrong answers are never tolerated.
func (s *soak) tolerate(sbx *osb.Sandbox, err error) bool {
	s.mu.Lock()
	ended := sbx != nil && s.ended[sbx.ID()]
	s.mu.Unlock()
	if ended {
		return true
	}
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	if s.fault == nil || !s.fault.explains(err) {
		return false
	}
	if s.fault.errors++; s.fault.sample == "" {
		s.fault.sample = err.Error()
	}
	return true
}

func (s *soak) markEnded(id string) {
	s.mu.Lock()
	s.ended[id] = true
	s.mu.Unlock()
}

// churn kills a random sandbox and creates a replacement every few seconds,
// and replaces sandboxes that died.
func (s *soak) churn(ctx context.Context, client *osb.Client) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(3 * time.Second):
		}
		s.mu.Lock()
		victim := rand.IntN(len(s.sbxs))
		sbxs := append([]*osb.Sandbox(nil), s.sbxs...)
		s.mu.Unlock()
		for i, b := range sbxs {
			running, err := b.IsRunning(ctx)
			if err != nil && ctx.Err() == nil && !s.tolerate(b, err) {
				fmt.Println("churn: status:", err)
			}
			if !running && err == nil {
				s.markEnded(b.ID())
			}
			if i == victim && running {
				s.markEnded(b.ID())
				if _, err := b.Kill(ctx); err == nil {
					s.mu.Lock()
					s.kills++
					s.mu.Unlock()
				}
				running = false
			}
			if running || err != nil {
				continue
			}
			nb, err := client.Create(ctx, osb.CreateOptions{Template: s.opts.template, Timeout: time.Hour})
			if err != nil {
				if ctx.Err() == nil && !s.tolerate(nil, err) {
					fmt.Println("churn: create:", err)
				}
				continue
			}
			s.mu.Lock()
			s.sbxs[i] = nb
			s.ids[nb.ID()] = true
			s.creates++
			s.mu.Unlock()
		}
	}
}

// injectFaults runs the four faults at fixed fractions of the run.
func (s *soak) injectFaults(ctx context.Context, start time.Time) {
	faults := []struct {
		name     string
		at       float64
		do       func(context.Context) (string, error)
		explains func(error) bool
	}{
		// Requests in flight and those sent while it is down fail.
		{"server SIGKILL + restart", 0.2, s.env.killServer, transportOrUnavailable},
		// Creates and kills need Podman; commands, files and streams do not,
		// but a kill that fails leaves a sandbox its caller believes gone.
		{"Podman service restart", 0.4, s.env.restartPodman, anyError},
		// Only the sandbox whose agent died may fail (it is marked ended).
		{"one agent killed", 0.6, s.killAgent, noError},
		// Events wait in SQLite: nobody may notice.
		{"NATS stopped for 10 s", 0.8, s.env.pauseNATS, noError},
	}
	for _, f := range faults {
		at := time.Duration(f.at * float64(s.opts.duration))
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(start.Add(at))):
		}
		rec := &faultRecord{name: f.name, at: at, explains: f.explains}
		s.faultMu.Lock()
		s.fault = rec
		s.faultMu.Unlock()
		began := time.Now()
		outcome, err := f.do(ctx)
		if err != nil {
			outcome = "FAILED: " + err.Error()
		}
		outage := time.Since(began)
		// Answers lost in flight arrive as errors a little after the fault.
		time.Sleep(5 * time.Second)
		s.faultMu.Lock()
		s.fault = nil
		rec.outage, rec.outcome = outage, outcome
		s.faults = append(s.faults, *rec)
		s.faultMu.Unlock()
		fmt.Printf("fault at %s: %s — %s\n", at.Round(time.Second), f.name, outcome)
	}
}

// killAgent SIGKILLs the agent (PID 1) of one sandbox from the host: the
// worker must notice and end that sandbox, and nothing else.
func (s *soak) killAgent(ctx context.Context) (string, error) {
	b := s.current()[0]
	out, err := exec.CommandContext(ctx, "podman", "inspect", "--format", "{{.State.Pid}}", "osb-"+b.ID()).Output()
	if err != nil {
		return "", fmt.Errorf("inspect: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil || pid <= 0 {
		return "", fmt.Errorf("no pid for %s: %q", b.ID(), out)
	}
	s.markEnded(b.ID())
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return "", err
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if info, err := b.Info(ctx); errors.Is(err, osb.ErrSandboxGone) || errors.Is(err, osb.ErrNotFound) || (err == nil && info.Status != osb.StatusRunning) {
			return "sandbox " + b.ID() + " ended by the worker", nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return "", fmt.Errorf("sandbox %s still running a minute after its agent was killed", b.ID())
}

// account checks what the run left: answers, rows, leaks and memory.
func (s *soak) account(ctx context.Context, client *osb.Client, rssStart int64) error {
	// Every sandbox the server knows is killed, as a user cleaning up
	// would: creates cut off by the end of the run may have succeeded.
	if all, err := client.List(ctx); err == nil {
		for _, info := range all {
			if b, err := client.Connect(ctx, info.SandboxID); err == nil {
				b.Kill(ctx)
			}
		}
	}
	var checks []check
	checks = append(checks, check{"wrong, lost or mixed answers", strconv.Itoa(len(s.rep.Failures)), len(s.rep.Failures) == 0})

	rows, extra, err := s.env.commandRows(ctx, s.rep, s.ids)
	if err != nil {
		checks = append(checks, check{"commands in PostgreSQL", err.Error(), false})
	} else {
		answered, unsure := 0, 0
		for _, n := range s.rep.Commands {
			answered += n
		}
		for _, n := range s.rep.Unsure {
			unsure += n
		}
		checks = append(checks, check{"commands answered / rows in PostgreSQL",
			fmt.Sprintf("%d / %d (+%d whose answer a fault cut off)", answered, rows, unsure), extra == ""})
		if extra != "" {
			fmt.Println("row accounting:", extra)
		}
	}
	leaks := s.env.leaks(ctx, s.ids)
	if leaks != "none" {
		out, _ := exec.Command("podman", "ps", "-a", "--filter", "label=opensandbox.worker="+s.env.srv.WorkerID,
			"--format", "{{.Names}} {{.State}} {{.Status}} {{.CreatedHuman}}").CombinedOutput()
		fmt.Printf("left behind:\n%s\nserver warnings and errors:\n%s\n", out, s.env.srv.Problems(60))
	}
	checks = append(checks, check{"leaked containers, SQLite files, processes", leaks, leaks == "none"})
	time.Sleep(5 * time.Second)
	rssEnd, _ := s.env.srv.RSS()
	inBand := rssEnd <= rssStart*3/2+32<<20
	checks = append(checks, check{"server RSS after warm-up / at the end", fmt.Sprintf("%d / %d MiB", rssStart>>20, rssEnd>>20), inBand})

	fmt.Println()
	fmt.Printf("| soak, %s, %d sandboxes × %d threads | |\n|---|---|\n", s.opts.duration, s.opts.sandboxes, s.opts.threads)
	fmt.Printf("| operations answered | %d (%s) |\n", s.rep.Total(), s.opsLine())
	fmt.Printf("| sandboxes created / killed by churn | %d / %d |\n", s.creates, s.kills)
	fmt.Printf("| errors explained by a fault or on a killed sandbox | %d |\n", s.rep.Tolerated)
	for _, f := range s.faults {
		fmt.Printf("| fault at %s: %s | %s (%s); %d requests failed with it |\n", f.at.Round(time.Second), f.name, f.outcome, f.outage.Round(100*time.Millisecond), f.errors)
		if f.sample != "" {
			fmt.Println("  e.g.", f.sample)
		}
	}
	ok := true
	for _, c := range checks {
		mark := "ok"
		if !c.ok {
			mark, ok = "FAIL", false
		}
		fmt.Printf("| %s | %s — %s |\n", c.name, c.value, mark)
	}
	if !ok {
		keep := filepath.Join(os.TempDir(), fmt.Sprintf("osb-soak-%s.log", time.Now().Format("20060102-150405")))
		if b, err := os.ReadFile(s.env.srv.LogPath); err == nil && os.WriteFile(keep, b, 0o644) == nil {
			fmt.Println("server log kept at", keep)
		}
		return errors.New("the soak found problems (see the table)")
	}
	return nil
}

func (s *soak) opsLine() string {
	var parts []string
	for _, op := range []load.Op{load.ExecShell, load.ExecArgv, load.ExecBoth, load.ExecLarge, load.Streamed, load.FileTrip, load.Background, load.Terminal} {
		parts = append(parts, fmt.Sprintf("%s %d", op, s.rep.Ops[op]))
	}
	return strings.Join(parts, ", ")
}

type check struct {
	name, value string
	ok          bool
}
