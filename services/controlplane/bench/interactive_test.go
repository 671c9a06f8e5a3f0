package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/worker/sandboxtest"
)

// BenchmarkInteractivePTYEcho: one keystroke over the terminal WebSocket
// until its echo comes back (client -> worker -> agent -> tty -> back).
func BenchmarkInteractivePTYEcho(b *testing.B) {
	base, _ := combined(b)
	id := createSandbox(b, base)
	var ps api.PTYSession
	post(b, base+"/sandboxes/"+id+"/pty", api.PTYConfig{Cols: 200, Rows: 50}, &ps)
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(base, "http")+"/sandboxes/"+id+"/pty/"+ps.SessionID, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer ws.Close()
	// One goroutine reads the socket: a WebSocket read that times out
	// leaves the connection unusable, so waits happen on the channel.
	msgs := make(chan []byte, 1024)
	go func() {
		defer close(msgs)
		for {
			_, msg, err := ws.ReadMessage()
			if err != nil {
				return
			}
			msgs <- msg
		}
	}()
	readUntil := func(want byte) {
		for {
			select {
			case msg, ok := <-msgs:
				if !ok {
					b.Fatal("terminal closed")
				}
				if bytes.IndexByte(msg, want) >= 0 {
					return
				}
			case <-time.After(10 * time.Second):
				b.Fatalf("no echo of %q", want)
			}
		}
	}
	// drain reads whatever arrives until the terminal is quiet.
	drain := func() {
		for {
			select {
			case <-msgs:
			case <-time.After(100 * time.Millisecond):
				return
			}
		}
	}
	ws.WriteMessage(websocket.BinaryMessage, []byte("echo ready-$((1+1))\n"))
	readUntil('2')
	drain()
	var ours []time.Duration
	for i := range 400 {
		if i%26 == 0 { // keep the line short: Ctrl-U clears it
			ws.WriteMessage(websocket.BinaryMessage, []byte{0x15})
			drain()
		}
		// Each keystroke is a letter the line does not hold yet, so the
		// echo that ends the wait is this keystroke's own.
		key := byte('a' + i%26)
		start := time.Now()
		ws.WriteMessage(websocket.BinaryMessage, []byte{key})
		readUntil(key)
		ours = append(ours, time.Since(start))
	}
	addRow(b, row{name: "PTY keystroke echo round trip", ours: ours, note: "WebSocket -> agent -> tty -> back; no raw Podman equivalent"})
}

// sseBytes reads a streamed run's SSE answer and returns how many stdout
// bytes it carried (from the base64 lengths; decoding is the client's cost).
func sseBytes(b *testing.B, r io.Reader) int64 {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 4<<20)
	var n int64
	exited := false
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.HasPrefix(line, []byte(`data: {"type":"stdout","data":"`)) {
			exited = exited || bytes.HasPrefix(line, []byte(`data: {"type":"exit","exitCode":0`))
			continue
		}
		enc := line[len(`data: {"type":"stdout","data":"`) : len(line)-2]
		n += int64(len(enc)/4*3 - bytes.Count(enc[len(enc)-2:], []byte("=")))
	}
	if !exited {
		b.Fatal("stream ended without a successful exit")
	}
	return n
}

// BenchmarkInteractiveStream100MiB: a command writing 100 MiB to stdout,
// streamed as SSE, beside the same command through Podman's exec API.
func BenchmarkInteractiveStream100MiB(b *testing.B) {
	const size = 100 << 20
	base, rt := combined(b)
	id := createSandbox(b, base)
	name := "osb-bench-raw-stream-" + sandboxtest.RandomID()
	rawStart(b, rt, name)
	defer rawRemove(rt, name)
	cmd := "head -c " + strconv.Itoa(size) + " /dev/zero"
	body, _ := json.Marshal(api.ProcessConfig{Cmd: cmd, Stream: true})
	var ours, raw []time.Duration
	for range 3 {
		start := time.Now()
		resp, err := client.Post(base+"/sandboxes/"+id+"/commands", "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		if n := sseBytes(b, resp.Body); n != size {
			b.Fatalf("streamed %d bytes", n)
		}
		resp.Body.Close()
		ours = append(ours, time.Since(start))

		start = time.Now()
		rawExec(b, rt, name, "sh", "-c", cmd)
		raw = append(raw, time.Since(start))
	}
	addRow(b, row{name: "stream 100 MiB stdout (SSE)", ours: ours, baseline: raw, baseName: "podman exec (API, attached)",
		note: fmt.Sprintf("%.0f MB/s vs %.0f MB/s", mbps(size, pct(ours, 50)), mbps(size, pct(raw, 50)))})
}

func mbps(bytes int64, d time.Duration) float64 { return float64(bytes) / 1e6 / d.Seconds() }

// peakRSS is this process's VmHWM; the combined server runs in it.
func peakRSS(b *testing.B) int64 {
	f, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(f), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// zeroReader yields n bytes of a small random block, repeated: cheap to
// produce, and not all zeros.
type zeroReader struct {
	block []byte
	left  int64
}

func (z *zeroReader) Read(p []byte) (int, error) {
	if z.left == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(int64(len(p)), z.left)], z.block)
	z.left -= int64(n)
	return n, nil
}

// BenchmarkInteractiveTransfer1GiB: upload and download of 1 GiB through
// the API beside a plain cp of a 1 GiB file on the same disk, with the
// server's peak resident memory.
func BenchmarkInteractiveTransfer1GiB(b *testing.B) {
	const size = 1 << 30
	base, _ := combined(b)
	id := createSandbox(b, base)
	block := make([]byte, 1<<20)
	rand.Read(block)
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Fatal(err)
	}
	var up, down, cp []time.Duration
	// The copy runs where the server keeps its data (make bench sets it),
	// which is on the disk that holds the sandboxes here.
	parent := os.Getenv("OPENSANDBOX_DATA_DIR")
	if parent == "" {
		parent = os.TempDir()
	}
	dir, err := os.MkdirTemp(parent, "osb-bench-cp-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	src := filepath.Join(dir, "src.bin")
	f, _ := os.Create(src)
	io.Copy(f, &zeroReader{block: block, left: size})
	f.Close()
	for range 2 {
		start := time.Now()
		req, _ := http.NewRequest("PUT", base+"/sandboxes/"+id+"/files?path=/tmp/big.bin", &zeroReader{block: block, left: size})
		req.ContentLength = size
		resp, err := client.Do(req)
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("upload: %v %v", err, resp)
		}
		resp.Body.Close()
		up = append(up, time.Since(start))

		start = time.Now()
		resp, err = client.Get(base + "/sandboxes/" + id + "/files?path=/tmp/big.bin")
		if err != nil {
			b.Fatal(err)
		}
		if n, _ := io.Copy(io.Discard, resp.Body); n != size {
			b.Fatalf("downloaded %d bytes", n)
		}
		resp.Body.Close()
		down = append(down, time.Since(start))

		start = time.Now()
		if out, err := exec.CommandContext(context.Background(), "cp", src, filepath.Join(dir, "dst.bin")).CombinedOutput(); err != nil {
			b.Fatalf("cp: %v %s", err, out)
		}
		cp = append(cp, time.Since(start))
		os.Remove(filepath.Join(dir, "dst.bin"))
	}
	peak := float64(peakRSS(b)) / (1 << 20)
	addRow(b, row{name: "upload 1 GiB", ours: up, baseline: cp, baseName: "cp of 1 GiB, same disk",
		note: fmt.Sprintf("%.0f MB/s vs %.0f MB/s; server peak RSS %.0f MiB", mbps(size, pct(up, 50)), mbps(size, pct(cp, 50)), peak)})
	addRow(b, row{name: "download 1 GiB", ours: down, baseline: cp, baseName: "cp of 1 GiB, same disk",
		note: fmt.Sprintf("%.0f MB/s vs %.0f MB/s; server peak RSS %.0f MiB", mbps(size, pct(down, 50)), mbps(size, pct(cp, 50)), peak)})
}
