package bench

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containers/podman/v5/pkg/api/handlers"
	"github.com/containers/podman/v5/pkg/bindings/containers"
	"github.com/containers/podman/v5/pkg/specgen"
	dockerContainer "github.com/docker/docker/api/types/container"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/server"
	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/shared/obs"
	"github.com/opensandbox/opensandbox/services/worker/runtime"
	"github.com/opensandbox/opensandbox/services/worker/sandbox"
	"github.com/opensandbox/opensandbox/services/worker/sandboxtest"
)

const image = "localhost/opensandbox/busybox:latest"

// combined starts a combined server and returns its URL.
func combined(b *testing.B) (string, *runtime.Podman) {
	rt := sandboxtest.Runtime(b)
	cfg := server.Config{Mode: "combined", MaxUpload: 1 << 30, Sandbox: sandboxtest.Config(b)}
	reg := obs.NewRegistry()
	mgr, err := sandbox.New(sandboxtest.Logger(b), rt, cfg.Sandbox, sandbox.NewMetrics(reg))
	if err != nil {
		b.Fatal(err)
	}
	app := server.NewCombined(sandboxtest.Logger(b), reg, mgr, cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go app.Listener(ln)
	b.Cleanup(func() {
		app.Shutdown()
		for _, sb := range mgr.List(context.Background(), "") {
			mgr.Kill(context.Background(), sb.SandboxID)
		}
		mgr.Close()
		sandboxtest.ExpectNoContainers(b, rt, cfg.Sandbox.WorkerID)
	})
	return "http://" + ln.Addr().String(), rt
}

var client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}

func post(b *testing.B, url string, in, out any) {
	body, _ := json.Marshal(in)
	resp, err := client.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		msg, _ := io.ReadAll(resp.Body)
		b.Fatalf("POST %s: %d %s", url, resp.StatusCode, msg)
	}
	if out != nil {
		json.NewDecoder(resp.Body).Decode(out)
	} else {
		io.Copy(io.Discard, resp.Body)
	}
}

func del(b *testing.B, url string) {
	req, _ := http.NewRequest("DELETE", url, nil)
	resp, err := client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
}

func createSandbox(b *testing.B, base string) string {
	var sb api.Sandbox
	post(b, base+"/sandboxes", api.SandboxConfig{TemplateID: "busybox"}, &sb)
	return sb.SandboxID
}

func execTrue(b *testing.B, base, id string) (timing string) {
	body, _ := json.Marshal(api.ProcessConfig{Cmd: "true", Args: []string{}})
	resp, err := client.Post(base+"/sandboxes/"+id+"/commands", "application/json", bytes.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var res api.ProcessResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil || resp.StatusCode != 200 || res.ExitCode != 0 {
		b.Fatalf("exec true: %d, exit %d, %v", resp.StatusCode, res.ExitCode, err)
	}
	return resp.Header.Get("Server-Timing")
}

// serverTiming parses a Server-Timing header into durations by name.
func serverTiming(h string) map[string]time.Duration {
	out := map[string]time.Duration{}
	for _, part := range strings.Split(h, ",") {
		name, dur, ok := strings.Cut(strings.TrimSpace(part), ";dur=")
		if !ok {
			continue
		}
		if ms, err := strconv.ParseFloat(dur, 64); err == nil {
			out[name] = time.Duration(ms * float64(time.Millisecond))
		}
	}
	return out
}

// rawStart creates and starts a container the way a plain Podman user would,
// with the same limits our sandboxes get.
func rawStart(b *testing.B, rt *runtime.Podman, name string) {
	ctx, cancel := rt.BindingsContext(context.Background())
	defer cancel()
	g := specgen.NewSpecGenerator(image, false)
	g.Name = name
	g.Command = []string{"sleep", "3600"}
	g.Labels = map[string]string{"opensandbox.bench": "raw"}
	g.CapDrop = []string{"all"}
	g.NetNS = specgen.Namespace{NSMode: specgen.NoNetwork}
	resp, err := containers.CreateWithSpec(ctx, g, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := containers.Start(ctx, resp.ID, nil); err != nil {
		b.Fatal(err)
	}
}

// rawExec runs argv through Podman's exec API and waits for its exit code.
func rawExec(b *testing.B, rt *runtime.Podman, name string, argv ...string) {
	ctx, cancel := rt.BindingsContext(context.Background())
	defer cancel()
	id, err := containers.ExecCreate(ctx, name, &handlers.ExecCreateConfig{ExecOptions: dockerContainer.ExecOptions{
		Cmd: argv, AttachStdout: true, AttachStderr: true,
	}})
	if err != nil {
		b.Fatal(err)
	}
	var out io.Writer = io.Discard
	attach := true
	if err := containers.ExecStartAndAttach(ctx, id, new(containers.ExecStartAndAttachOptions).
		WithOutputStream(out).WithErrorStream(out).WithAttachOutput(attach).WithAttachError(attach)); err != nil {
		b.Fatal(err)
	}
	info, err := containers.ExecInspect(ctx, id, nil)
	if err != nil || info.ExitCode != 0 {
		b.Fatalf("exec %v: %v exit %d", argv, err, info.ExitCode)
	}
}

func rawRemove(rt *runtime.Podman, name string) { rt.Remove(context.Background(), name) }

func BenchmarkCreateToFirstExec(b *testing.B) {
	base, rt := combined(b)
	const n = 25
	var ours, raw []time.Duration
	for i := range n {
		start := time.Now()
		id := createSandbox(b, base)
		execTrue(b, base, id)
		ours = append(ours, time.Since(start))
		del(b, base+"/sandboxes/"+id)

		name := fmt.Sprintf("osb-bench-raw-%d-%s", i, sandboxtest.RandomID())
		start = time.Now()
		rawStart(b, rt, name)
		rawExec(b, rt, name, "true")
		raw = append(raw, time.Since(start))
		rawRemove(rt, name)
	}
	addRow(b, row{name: "create -> first exec done", ours: ours, baseline: raw, baseName: "create+start+exec (bindings)", note: "target <= 1.2x"})
}

func BenchmarkExecRoundTrip(b *testing.B) {
	base, rt := combined(b)
	id := createSandbox(b, base)
	name := "osb-bench-raw-exec-" + sandboxtest.RandomID()
	rawStart(b, rt, name)
	defer rawRemove(rt, name)
	var ours, raw []time.Duration
	for range 20 { // warm up connections
		execTrue(b, base, id)
	}
	steps := map[string][]time.Duration{}
	for range 300 {
		start := time.Now()
		timing := execTrue(b, base, id)
		total := time.Since(start)
		ours = append(ours, total)
		st := serverTiming(timing)
		steps["request"] = append(steps["request"], st["request"])
		steps["agent"] = append(steps["agent"], st["agent"]-st["process"])
		steps["process"] = append(steps["process"], st["process"])
		steps["log"] = append(steps["log"], st["log"])
		steps["rest"] = append(steps["rest"], total-st["request"]-st["agent"]-st["log"])
	}
	for range 60 {
		start := time.Now()
		rawExec(b, rt, name, "true")
		raw = append(raw, time.Since(start))
	}
	addRow(b, row{name: "exec `true` round trip", ours: ours, baseline: raw, baseName: "podman exec (API)", note: "target p50 <= 2 ms, p99 <= 5 ms"})
	// Where one exec's time goes (the server's Server-Timing header).
	for _, st := range []struct{ key, name string }{
		{"request", "  HTTP, routing, auth"},
		{"agent", "  agent round trip, less process"},
		{"process", "  process: fork, exec, exit"},
		{"log", "  command log row + event"},
		{"rest", "  answer, client, loopback"},
	} {
		tableMu.Lock()
		table = append(table, row{name: st.name, ours: steps[st.key]})
		tableMu.Unlock()
	}
}

func BenchmarkFileIO16MiB(b *testing.B) {
	base, rt := combined(b)
	id := createSandbox(b, base)
	name := "osb-bench-raw-files-" + sandboxtest.RandomID()
	rawStart(b, rt, name)
	defer rawRemove(rt, name)
	data := make([]byte, 16<<20)
	rand.Read(data)
	var tarball bytes.Buffer
	tw := tar.NewWriter(&tarball)
	tw.WriteHeader(&tar.Header{Name: "f.bin", Mode: 0o644, Size: int64(len(data))})
	tw.Write(data)
	tw.Close()

	const n = 20
	var ourW, ourR, rawW, rawR []time.Duration
	for range n {
		start := time.Now()
		req, _ := http.NewRequest("PUT", base+"/sandboxes/"+id+"/files?path=/tmp/f.bin", bytes.NewReader(data))
		resp, err := client.Do(req)
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("upload: %v", err)
		}
		resp.Body.Close()
		ourW = append(ourW, time.Since(start))

		start = time.Now()
		resp, err = client.Get(base + "/sandboxes/" + id + "/files?path=/tmp/f.bin")
		if err != nil {
			b.Fatal(err)
		}
		got, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if got != int64(len(data)) {
			b.Fatalf("downloaded %d bytes", got)
		}
		ourR = append(ourR, time.Since(start))

		ctx, cancel := rt.BindingsContext(context.Background())
		start = time.Now()
		copyFn, err := containers.CopyFromArchive(ctx, name, "/tmp", bytes.NewReader(tarball.Bytes()))
		if err == nil {
			err = copyFn()
		}
		if err != nil {
			b.Fatal(err)
		}
		rawW = append(rawW, time.Since(start))

		start = time.Now()
		var sink countWriter
		copyFn, err = containers.CopyToArchive(ctx, name, "/tmp/f.bin", &sink)
		if err == nil {
			err = copyFn()
		}
		if err != nil || sink < 16<<20 {
			b.Fatalf("raw read: %v (%d bytes)", err, sink)
		}
		rawR = append(rawR, time.Since(start))
		cancel()
	}
	addRow(b, row{name: "write 16 MiB file", ours: ourW, baseline: rawW, baseName: "podman cp in (archive API)"})
	addRow(b, row{name: "read 16 MiB file", ours: ourR, baseline: rawR, baseName: "podman cp out (archive API)"})
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }
