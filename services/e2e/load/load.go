// Package load drives a server the way a crowd of agents does: many threads
// over many sandboxes, each operation carrying a unique tag, and every answer
// compared byte for byte with what the command must have printed. A single
// lost, truncated-without-flag or mixed-up output fails the run.
package load

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	osb "github.com/opensandbox/opensandbox/sdks/go"
)

// Op is one kind of operation of the workload.
type Op string

// The operations. Every one checks its whole answer.
const (
	ExecShell  Op = "exec-sh"    // echo TAG through /bin/sh -c
	ExecArgv   Op = "exec-argv"  // echo TAG as argv
	ExecBoth   Op = "exec-both"  // stdout, stderr and an exit code
	ExecLarge  Op = "exec-large" // more output than a pipe holds
	Streamed   Op = "stream"     // an SSE run, its chunks concatenated
	FileTrip   Op = "file"       // write random bytes, read them back, compare checksums
	Background Op = "background" // a background process, followed with replay
	Terminal   Op = "pty"        // a shell in a terminal prints and exits
)

// Mix weights operations; a run picks each operation at random by weight.
type Mix map[Op]int

// ExecMix is the workload of the throughput figure: plain echo commands, half
// through the shell, half as argv.
var ExecMix = Mix{ExecShell: 1, ExecArgv: 1}

// MixedMix exercises every path that carries output.
var MixedMix = Mix{ExecShell: 6, ExecArgv: 4, ExecBoth: 2, ExecLarge: 2, Streamed: 2, FileTrip: 2, Background: 1, Terminal: 1}

// Options shape a run.
type Options struct {
	Sandboxes []*osb.Sandbox
	Threads   int // per sandbox
	PerThread int // operations per thread
	Mix       Mix
	// OpTimeout bounds one operation (the whole run is bounded by ctx).
	OpTimeout time.Duration
	// Tolerate, when set, decides whether an SDK error (not a wrong answer)
	// is expected, e.g. while the soak restarts the server or on a sandbox
	// it killed. Wrong answers are never tolerated.
	Tolerate func(sbx *osb.Sandbox, err error) bool
}

// Failure is one operation whose answer was wrong or that failed.
type Failure struct {
	Op      Op
	Sandbox string
	Tag     string
	Kind    string // lost, truncated, mixed, wrong, error
	Detail  string
}

func (f Failure) String() string {
	return fmt.Sprintf("%s %s on %s (tag %s): %s", f.Op, f.Kind, f.Sandbox, f.Tag, f.Detail)
}

// Report is the outcome of a run.
type Report struct {
	Ops       map[Op]int
	Tolerated int // SDK errors that Tolerate accepted
	Failures  []Failure
	Elapsed   time.Duration
	latencies map[Op][]time.Duration
	// Commands counts, by sandbox, the answered operations that the server
	// logs as a command (plain and streamed runs); Unsure counts those whose
	// answer was lost to a tolerated error: they may or may not have run.
	Commands map[string]int
	Unsure   map[string]int
}

// logsCommand reports whether the server logs op as one command.
func logsCommand(op Op) bool {
	switch op {
	case ExecShell, ExecArgv, ExecBoth, ExecLarge, Streamed:
		return true
	}
	return false
}

// Add adds the counts of another run to r.
func (r *Report) Add(o *Report) {
	for op, n := range o.Ops {
		r.Ops[op] += n
		r.latencies[op] = append(r.latencies[op], o.latencies[op]...)
	}
	for id, n := range o.Commands {
		r.Commands[id] += n
	}
	for id, n := range o.Unsure {
		r.Unsure[id] += n
	}
	r.Tolerated += o.Tolerated
	r.Failures = append(r.Failures, o.Failures...)
	r.Elapsed += o.Elapsed
}

// NewReport returns an empty report to Add runs to.
func NewReport() *Report {
	return &Report{Ops: map[Op]int{}, latencies: map[Op][]time.Duration{}, Commands: map[string]int{}, Unsure: map[string]int{}}
}

// Total is the number of operations done.
func (r *Report) Total() int {
	n := 0
	for _, c := range r.Ops {
		n += c
	}
	return n
}

// Rate is operations of the given kinds per second.
func (r *Report) Rate(ops ...Op) float64 {
	n := 0
	for _, op := range ops {
		n += r.Ops[op]
	}
	return float64(n) / r.Elapsed.Seconds()
}

// Quantile returns the q-quantile (0..1) of the given operations' latency.
func (r *Report) Quantile(q float64, ops ...Op) time.Duration {
	var all []time.Duration
	for _, op := range ops {
		all = append(all, r.latencies[op]...)
	}
	if len(all) == 0 {
		return 0
	}
	slices.Sort(all)
	i := int(q * float64(len(all)-1))
	return all[i]
}

// Summary is a short table of the run.
func (r *Report) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d operations in %s (%.0f/s), %d failures, %d tolerated errors\n",
		r.Total(), r.Elapsed.Round(time.Millisecond), r.Rate(r.kinds()...), len(r.Failures), r.Tolerated)
	fmt.Fprintf(&b, "%-12s %7s %9s %9s\n", "op", "count", "p50", "p99")
	for _, op := range r.kinds() {
		fmt.Fprintf(&b, "%-12s %7d %9s %9s\n", op, r.Ops[op],
			r.Quantile(0.5, op).Round(100*time.Microsecond), r.Quantile(0.99, op).Round(100*time.Microsecond))
	}
	return b.String()
}

func (r *Report) kinds() []Op {
	var ops []Op
	for op := range r.Ops {
		ops = append(ops, op)
	}
	slices.Sort(ops)
	return ops
}

// Run runs the workload and returns when every thread is done or ctx ends.
func Run(ctx context.Context, opts Options) *Report {
	if opts.OpTimeout <= 0 {
		opts.OpTimeout = time.Minute
	}
	rep := NewReport()
	var mu sync.Mutex
	record := func(op Op, id string, d time.Duration, f *Failure, tolerated bool) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case tolerated:
			rep.Tolerated++
			if logsCommand(op) {
				rep.Unsure[id]++
			}
		case f != nil:
			rep.Failures = append(rep.Failures, *f)
		default:
			rep.Ops[op]++
			rep.latencies[op] = append(rep.latencies[op], d)
			if logsCommand(op) {
				rep.Commands[id]++
			}
		}
	}
	pick := picker(opts.Mix)
	start := time.Now()
	var wg sync.WaitGroup
	for si, sbx := range opts.Sandboxes {
		for t := range opts.Threads {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range opts.PerThread {
					if ctx.Err() != nil {
						return
					}
					op := pick()
					tag := fmt.Sprintf("s%dt%di%d-%s", si, t, i, randomHex(4))
					octx, cancel := context.WithTimeout(ctx, opts.OpTimeout)
					began := time.Now()
					err := do(octx, sbx, op, tag)
					d := time.Since(began)
					cancel()
					var f *Failure
					tolerated := false
					if err != nil {
						f = &Failure{Op: op, Sandbox: sbx.ID(), Tag: tag, Kind: "error", Detail: err.Error()}
						var w *wrongAnswer
						if errors.As(err, &w) {
							f.Kind = w.kind
						} else if ctx.Err() != nil {
							// The run was stopped, not the server's fault;
							// the operation may or may not have happened.
							record(op, sbx.ID(), d, nil, true)
							return
						} else if opts.Tolerate != nil && opts.Tolerate(sbx, err) {
							tolerated = true
						}
					}
					record(op, sbx.ID(), d, f, tolerated)
					if tolerated {
						// Back off as a client does while the server is away.
						time.Sleep(200 * time.Millisecond)
					}
				}
			}()
		}
	}
	wg.Wait()
	rep.Elapsed = time.Since(start)
	return rep
}

func picker(m Mix) func() Op {
	var ops []Op
	for op, w := range m {
		for range w {
			ops = append(ops, op)
		}
	}
	slices.Sort(ops)
	return func() Op { return ops[mrand.IntN(len(ops))] }
}

// wrongAnswer is an answer that arrived but is not what the command printed.
type wrongAnswer struct {
	kind, detail string
}

func (w *wrongAnswer) Error() string { return w.kind + ": " + w.detail }

// compare classifies got against want. truncated is the server's flag.
func compare(what, want, got string, truncated bool) error {
	switch {
	case got == want:
		return nil
	case got == "" && want != "":
		return &wrongAnswer{"lost", fmt.Sprintf("%s empty, want %d bytes %q", what, len(want), clip(want))}
	case strings.HasPrefix(want, got) && !truncated:
		return &wrongAnswer{"truncated", fmt.Sprintf("%s has %d of %d bytes and no truncation flag", what, len(got), len(want))}
	case strings.Contains(got, "-") && !strings.Contains(got, firstLine(want)):
		return &wrongAnswer{"mixed", fmt.Sprintf("%s is %q, want %q", what, clip(got), clip(want))}
	default:
		return &wrongAnswer{"wrong", fmt.Sprintf("%s is %q, want %q", what, clip(got), clip(want))}
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

func checkResult(res *osb.CommandResult, stdout, stderr string, code int) error {
	if err := compare("stdout", stdout, res.Stdout, res.StdoutTruncated); err != nil {
		return err
	}
	if err := compare("stderr", stderr, res.Stderr, res.StderrTruncated); err != nil {
		return err
	}
	if res.ExitCode != code {
		return &wrongAnswer{"wrong", fmt.Sprintf("exit code %d, want %d", res.ExitCode, code)}
	}
	return nil
}

// largeLines is how many lines ExecLarge prints: about 150 KB, more than a
// pipe's 64 KiB, so the agent must read while the command runs.
const largeLines = 5000

func do(ctx context.Context, sbx *osb.Sandbox, op Op, tag string) error {
	cmds := sbx.Commands()
	switch op {
	case ExecShell:
		res, err := cmds.Run(ctx, "echo "+tag, osb.RunOptions{})
		if err != nil {
			return err
		}
		return checkResult(res, tag+"\n", "", 0)
	case ExecArgv:
		res, err := cmds.Run(ctx, "echo", osb.RunOptions{Args: []string{tag}})
		if err != nil {
			return err
		}
		return checkResult(res, tag+"\n", "", 0)
	case ExecBoth:
		res, err := cmds.Run(ctx, fmt.Sprintf("echo %s-out; echo %s-err >&2; exit 3", tag, tag), osb.RunOptions{})
		if err != nil {
			return err
		}
		return checkResult(res, tag+"-out\n", tag+"-err\n", 3)
	case ExecLarge:
		res, err := cmds.Run(ctx, fmt.Sprintf("yes %s | head -n %d", tag, largeLines), osb.RunOptions{})
		if err != nil {
			return err
		}
		return checkResult(res, strings.Repeat(tag+"\n", largeLines), "", 0)
	case Streamed:
		var out, errOut bytes.Buffer
		res, err := cmds.Run(ctx, fmt.Sprintf("for i in 1 2 3; do echo %s-$i; done; echo %s-e >&2", tag, tag), osb.RunOptions{
			OnStdout: func(b []byte) { out.Write(b) },
			OnStderr: func(b []byte) { errOut.Write(b) },
		})
		if err != nil {
			return err
		}
		want := fmt.Sprintf("%s-1\n%s-2\n%s-3\n", tag, tag, tag)
		if err := compare("streamed stdout", want, out.String(), false); err != nil {
			return err
		}
		if err := compare("streamed stderr", tag+"-e\n", errOut.String(), false); err != nil {
			return err
		}
		return checkResult(res, want, tag+"-e\n", 0)
	case FileTrip:
		return fileTrip(ctx, sbx, tag)
	case Background:
		h, err := cmds.Start(ctx, fmt.Sprintf("i=0; while [ $i -lt 100 ]; do echo %s-$i; i=$((i+1)); done", tag), osb.RunOptions{})
		if err != nil {
			return err
		}
		res, err := h.Wait(ctx)
		if err != nil {
			return err
		}
		var want strings.Builder
		for i := range 100 {
			fmt.Fprintf(&want, "%s-%d\n", tag, i)
		}
		return checkResult(res, want.String(), "", 0)
	case Terminal:
		return terminal(ctx, sbx, tag)
	}
	return fmt.Errorf("unknown op %s", op)
}

func fileTrip(ctx context.Context, sbx *osb.Sandbox, tag string) error {
	data := make([]byte, mrand.IntN(256<<10))
	rand.Read(data)
	path := "/tmp/" + tag
	files := sbx.Files()
	if _, err := files.Write(ctx, path, bytes.NewReader(data)); err != nil {
		return err
	}
	got, err := files.ReadBytes(ctx, path)
	if err != nil {
		return err
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		kind := "wrong"
		if len(got) < len(data) {
			kind = "truncated"
		}
		return &wrongAnswer{kind, fmt.Sprintf("file %s read back %d bytes, wrote %d, checksums differ", path, len(got), len(data))}
	}
	return files.Remove(ctx, path)
}

// terminal runs a shell in a PTY that prints a marker and exits: the marker
// must arrive before the exit. The marker is built by printf so that the
// terminal's echo of the typed line does not contain it.
func terminal(ctx context.Context, sbx *osb.Sandbox, tag string) error {
	var mu sync.Mutex
	var out bytes.Buffer
	h, err := sbx.PTY().CreateWithOptions(ctx, osb.PTYOptions{Shell: "/bin/sh", OnData: func(b []byte) {
		mu.Lock()
		out.Write(b)
		mu.Unlock()
	}})
	if err != nil {
		return err
	}
	defer h.Close()
	if err := h.Send(ctx, []byte(fmt.Sprintf("printf '<%%s>\\n' %s; exit 0\n", tag))); err != nil {
		return err
	}
	code, err := h.Wait(ctx)
	if err != nil {
		return err
	}
	mu.Lock()
	got := out.String()
	mu.Unlock()
	if !strings.Contains(got, "<"+tag+">") {
		return &wrongAnswer{"lost", fmt.Sprintf("terminal output %q lacks <%s>", clip(got), tag)}
	}
	if code != 0 {
		return &wrongAnswer{"wrong", fmt.Sprintf("shell exit code %d", code)}
	}
	return nil
}

// NewClient returns an SDK client for many concurrent calls: one kept
// connection per thread, as a pool of agents would hold.
func NewClient(apiURL, apiKey string, conns int) *osb.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = conns
	tr.MaxIdleConns = conns
	return osb.NewClient(osb.WithAPIURL(apiURL), osb.WithAPIKey(apiKey), osb.WithHTTPClient(&http.Client{Transport: tr}))
}

// CreateSandboxes creates n sandboxes of template, a few at a time.
func CreateSandboxes(ctx context.Context, c *osb.Client, n int, template string) ([]*osb.Sandbox, error) {
	out := make([]*osb.Sandbox, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i], errs[i] = c.Create(ctx, osb.CreateOptions{Template: template, Timeout: 30 * time.Minute})
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		KillAll(context.WithoutCancel(ctx), out)
		return nil, err
	}
	return out, nil
}

// KillAll kills the sandboxes, ignoring ones already gone.
func KillAll(ctx context.Context, sbxs []*osb.Sandbox) {
	for _, s := range sbxs {
		if s != nil {
			s.Kill(ctx)
		}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return fmt.Sprintf("%x", b)
}
