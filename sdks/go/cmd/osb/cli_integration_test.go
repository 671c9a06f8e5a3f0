//go:build integration

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	opensandbox "github.com/opensandbox/opensandbox/sdks/go"
)

// osbBin is the osb binary built for these tests: the CLI is tested end to
// end, as a user runs it, against the server in OPENSANDBOX_API_URL.
var osbBin string

func TestMain(m *testing.M) {
	if os.Getenv("OPENSANDBOX_API_URL") == "" || os.Getenv("OPENSANDBOX_API_KEY") == "" {
		fmt.Fprintln(os.Stderr, "CLI tests need OPENSANDBOX_API_URL and OPENSANDBOX_API_KEY "+
			"(run them through scripts/with-server.sh make -C sdks/go test)")
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "osb-cli-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	osbBin = filepath.Join(dir, "osb")
	if out, err := exec.Command("go", "build", "-o", osbBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build osb: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is one finished osb run.
type result struct {
	stdout, stderr string
	code           int
}

// osb runs the binary to completion with stdin as its input.
func osb(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, osbBin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("osb %v: %v", args, err)
	}
	return result{out.String(), errOut.String(), cmd.ProcessState.ExitCode()}
}

// mustOSB runs osb and requires exit code 0.
func mustOSB(t *testing.T, args ...string) string {
	t.Helper()
	r := osb(t, "", args...)
	if r.code != 0 {
		t.Fatalf("osb %v: exit %d\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// sandbox creates a sandbox with `osb create` and kills it (through the SDK)
// when the test ends.
func sandbox(t *testing.T, template string) string {
	t.Helper()
	id := strings.TrimSpace(mustOSB(t, "create", "--template", template, "--timeout", "3m"))
	if id == "" || strings.ContainsAny(id, " \n") {
		t.Fatalf("create printed %q, want one id", id)
	}
	t.Cleanup(func() { killQuietly(t, id) })
	return id
}

func killQuietly(t *testing.T, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sbx, err := opensandbox.NewClient().Connect(ctx, id)
	if err == nil {
		_, err = sbx.Kill(ctx)
	}
	if err != nil && !errors.Is(err, opensandbox.ErrSandboxGone) {
		t.Errorf("kill %s: %v", id, err)
	}
}

func connect(t *testing.T, id string) *opensandbox.Sandbox {
	t.Helper()
	sbx, err := opensandbox.NewClient().Connect(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return sbx
}

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor polls until the output after from contains want.
func (b *lockedBuffer) waitFor(t *testing.T, from int, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := b.String()
		if len(s) >= from && strings.Contains(s[from:], want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the output: %q", want, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestCLICreateListKill(t *testing.T) {
	t.Parallel()
	var info opensandbox.SandboxInfo
	if err := json.Unmarshal([]byte(mustOSB(t, "create", "--template", "busybox", "--timeout", "120", "--json",
		"--metadata", "owner=cli-test")), &info); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { killQuietly(t, info.SandboxID) })
	if info.SandboxID == "" || info.TemplateID != "busybox" || info.Status != "running" || info.Metadata["owner"] != "cli-test" {
		t.Fatalf("create --json printed %+v", info)
	}
	other := sandbox(t, "busybox")

	table := mustOSB(t, "ls")
	if !strings.HasPrefix(table, "ID ") || !strings.Contains(table, info.SandboxID) || !strings.Contains(table, other) {
		t.Fatalf("ls:\n%s", table)
	}
	var list []opensandbox.SandboxInfo
	if err := json.Unmarshal([]byte(mustOSB(t, "ls", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	if !containsID(list, info.SandboxID) || !containsID(list, other) {
		t.Fatalf("ls --json lacks the sandboxes: %+v", list)
	}

	if out := mustOSB(t, "kill", other); strings.TrimSpace(out) != other {
		t.Fatalf("kill printed %q", out)
	}
	if err := json.Unmarshal([]byte(mustOSB(t, "ls", "--json")), &list); err != nil || containsID(list, other) {
		t.Fatalf("ls --json after kill: %+v, %v", list, err)
	}
	r := osb(t, "", "kill", other)
	if r.code != 1 || !strings.Contains(r.stderr, "sandbox_not_found") {
		t.Fatalf("second kill: %+v", r)
	}
	if r := osb(t, "", "create", "--template", "no-such-template"); r.code != 1 || !strings.Contains(r.stderr, "template_not_found") {
		t.Fatalf("create with a bad template: %+v", r)
	}
}

func containsID(list []opensandbox.SandboxInfo, id string) bool {
	for _, s := range list {
		if s.SandboxID == id {
			return true
		}
	}
	return false
}

// binaryInput is every byte value, over several stdin chunks.
var binaryInput = bytes.Repeat([]byte(func() string {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return string(b)
}()), 4096)

func TestCLIExec(t *testing.T) {
	t.Parallel()
	id := sandbox(t, "busybox")
	tests := []struct {
		name           string
		stdin          string
		args           []string
		code           int
		stdout, stderr string
	}{
		{"argv and exit code", "", []string{"exec", id, "--", "sh", "-c", "echo out; echo err >&2; exit 7"}, 7, "out\n", "err\n"},
		{"one word runs through the shell", "", []string{"exec", id, "--", "echo $((2+3)) | tr 5 V"}, 0, "V\n", ""},
		{"flags after the id", "", []string{"exec", id, "--cwd", "/tmp", "--env", "A=b", "--", "sh", "-c", "pwd; echo $A"}, 0, "/tmp\nb\n", ""},
		{"stdin", "make me loud", []string{"exec", "-i", id, "--", "tr", "a-z", "A-Z"}, 0, "MAKE ME LOUD", ""},
		{"binary stdin", string(binaryInput), []string{"exec", "-i", id, "--", "sha256sum"}, 0, fmt.Sprintf("%x  -\n", sha256.Sum256(binaryInput)), ""},
		{"timeout", "", []string{"exec", "--timeout", "1", id, "--", "sleep 30"}, 124, "", "ran out of time"},
		{"missing sandbox", "", []string{"exec", "no-such-id", "--", "true"}, 1, "", "sandbox_not_found"},
		{"no command", "", []string{"exec", id}, 2, "", "usage: osb exec"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := osb(t, tt.stdin, tt.args...)
			if r.code != tt.code || r.stdout != tt.stdout || !strings.Contains(r.stderr, tt.stderr) {
				t.Fatalf("got exit %d stdout %q stderr %q; want %d %q %q", r.code, r.stdout, r.stderr, tt.code, tt.stdout, tt.stderr)
			}
		})
	}

	t.Run("streams live", func(t *testing.T) {
		// The command only ends after the test has seen its first line.
		cmd := exec.Command(osbBin, "exec", id, "--", "echo first; while [ ! -e /tmp/go-on ]; do sleep 0.05; done; echo second")
		var out lockedBuffer
		cmd.Stdout = &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill() })
		out.waitFor(t, 0, "first\n")
		if _, err := connect(t, id).Files().Write(context.Background(), "/tmp/go-on", strings.NewReader("")); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil || out.String() != "first\nsecond\n" {
			t.Fatalf("exec: %v, output %q", err, out.String())
		}
	})
}

func TestCLICopy(t *testing.T) {
	t.Parallel()
	id := sandbox(t, "busybox")
	dir := t.TempDir()
	src := filepath.Join(dir, "payload.bin")
	data := make([]byte, 20<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(src, data, 0o640); err != nil {
		t.Fatal(err)
	}

	// Into a directory (trailing slash): the name is kept; progress on stderr.
	r := osb(t, "", "cp", src, id+":/data/")
	if r.code != 0 || r.stdout != "" || !strings.Contains(r.stderr, "100%") || !strings.Contains(r.stderr, "upload payload.bin done") {
		t.Fatalf("cp up: %+v", r)
	}
	sum := fmt.Sprintf("%x", sha256.Sum256(data))
	res, err := connect(t, id).Commands().Run(context.Background(), "sha256sum /data/payload.bin; stat -c %a /data/payload.bin", opensandbox.RunOptions{})
	if err != nil || !strings.HasPrefix(res.Stdout, sum) || !strings.HasSuffix(res.Stdout, "\n640\n") {
		t.Fatalf("in the sandbox: %q, %v; want %s and mode 640", res.Stdout, err, sum)
	}

	back := filepath.Join(dir, "back")
	if err := os.Mkdir(back, 0o755); err != nil {
		t.Fatal(err)
	}
	r = osb(t, "", "cp", id+":/data/payload.bin", back)
	if r.code != 0 || !strings.Contains(r.stderr, "download payload.bin done") {
		t.Fatalf("cp down: %+v", r)
	}
	got, err := os.ReadFile(filepath.Join(back, "payload.bin"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("downloaded copy differs (%d bytes, %v)", len(got), err)
	}

	// Small copies through stdin and stdout, quietly.
	if r := osb(t, "small text", "cp", "-", id+":/data/small.txt"); r.code != 0 || r.stderr != "" {
		t.Fatalf("cp from stdin: %+v", r)
	}
	if r := osb(t, "", "cp", "-q", id+":/data/small.txt", "-"); r.code != 0 || r.stdout != "small text" || r.stderr != "" {
		t.Fatalf("cp to stdout: %+v", r)
	}
	if r := osb(t, "", "cp", id+":/data/missing", filepath.Join(dir, "missing")); r.code != 1 || !strings.Contains(r.stderr, "file_not_found") {
		t.Fatalf("cp of a missing file: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failed copy left a file: %v", err)
	}
	if r := osb(t, "", "cp", src, filepath.Join(dir, "x")); r.code != 2 {
		t.Fatalf("cp with two local paths: %+v", r)
	}
}

func TestCLIProcesses(t *testing.T) {
	t.Parallel()
	id := sandbox(t, "busybox")
	ctx := context.Background()
	h, err := connect(t, id).Commands().Start(ctx, "echo hello-logs; echo warn >&2; while [ ! -e /tmp/stop ]; do sleep 0.05; done; echo bye",
		opensandbox.RunOptions{Tag: "svc"})
	if err != nil {
		t.Fatal(err)
	}
	pid := strconv.Itoa(h.PID)

	table := mustOSB(t, "ps", id)
	if !strings.HasPrefix(table, "PID ") || !strings.Contains(table, pid) || !strings.Contains(table, "running") || !strings.Contains(table, "svc") {
		t.Fatalf("ps:\n%s", table)
	}
	var procs []opensandbox.ProcessInfo
	if err := json.Unmarshal([]byte(mustOSB(t, "ps", "--json", id)), &procs); err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(procs, func(p opensandbox.ProcessInfo) bool { return p.PID == h.PID }); i < 0 || procs[i].Tag != "svc" || !procs[i].Running {
		t.Fatalf("ps --json: %+v", procs)
	}

	// logs replays what was printed, then follows until the process exits.
	cmd := exec.Command(osbBin, "logs", id, pid)
	var out, errOut lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	out.waitFor(t, 0, "hello-logs\n")
	errOut.waitFor(t, 0, "warn\n")
	if _, err := connect(t, id).Files().Write(ctx, "/tmp/stop", strings.NewReader("")); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil || out.String() != "hello-logs\nbye\n" {
		t.Fatalf("logs: %v, output %q", err, out.String())
	}
	if r := osb(t, "", "logs", id, "999999"); r.code != 1 || !strings.Contains(r.stderr, "process_not_found") {
		t.Fatalf("logs of an unknown pid: %+v", r)
	}
}
