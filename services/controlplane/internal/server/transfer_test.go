package server

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// memory is a process's resident set, from /proc/<pid>/status.
type memory struct{ rss, peak int64 } // bytes: VmRSS, VmHWM

func readMemory(t *testing.T, pid string) memory {
	t.Helper()
	f, err := os.Open("/proc/" + pid + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var m memory
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			m.rss = kb << 10
		case "VmHWM":
			m.peak = kb << 10
		}
	}
	return m
}

// resetPeak starts a new VmHWM measurement for pid (Linux: write 5 to clear_refs).
func resetPeak(t *testing.T, pid string) {
	t.Helper()
	if err := os.WriteFile("/proc/"+pid+"/clear_refs", []byte("5"), 0); err != nil {
		t.Fatalf("reset peak RSS of %s: %v", pid, err)
	}
}

// A 1 GiB file goes up and comes back with the same SHA-256 while the
// resident memory of the server (this process: the combined server runs
// in it) and of the sandbox's agent stays flat. The data is generated and
// hashed as it streams; no side holds it whole.
func TestOneGiBRoundTripKeepsMemoryFlat(t *testing.T) {
	const size = 1 << 30
	const bound = 64 << 20 // allowed growth of peak RSS over the start
	s := startCombined(t, nil)
	id := createBox(t, s, "busybox")
	agent := strconv.Itoa(agentPID(t, id))
	self := strconv.Itoa(os.Getpid())

	resetPeak(t, self)
	resetPeak(t, agent)
	serverBefore, agentBefore := readMemory(t, self), readMemory(t, agent)

	up := sha256.New()
	body := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{7}), size), up)
	req, _ := http.NewRequest("PUT", s.url+"/sandboxes/"+id+"/files?path=/tmp/big.bin", body)
	req.ContentLength = size
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("upload: %d", resp.StatusCode)
	}
	upTime := time.Since(start)

	start = time.Now()
	resp, err = http.Get(s.url + "/sandboxes/" + id + "/files?path=/tmp/big.bin")
	if err != nil {
		t.Fatal(err)
	}
	down := sha256.New()
	n, err := io.Copy(down, resp.Body)
	resp.Body.Close()
	if err != nil || n != size || resp.ContentLength != size {
		t.Fatalf("download: %d bytes (Content-Length %d): %v", n, resp.ContentLength, err)
	}
	downTime := time.Since(start)
	if fmt.Sprintf("%x", up.Sum(nil)) != fmt.Sprintf("%x", down.Sum(nil)) {
		t.Fatal("SHA-256 of the download differs from the upload")
	}

	serverAfter, agentAfter := readMemory(t, self), readMemory(t, agent)
	mib := func(b int64) float64 { return float64(b) / (1 << 20) }
	t.Logf("1 GiB up %.0f MB/s, down %.0f MB/s", size/1e6/upTime.Seconds(), size/1e6/downTime.Seconds())
	t.Logf("server RSS %.1f MiB -> peak %.1f MiB; agent RSS %.1f MiB -> peak %.1f MiB",
		mib(serverBefore.rss), mib(serverAfter.peak), mib(agentBefore.rss), mib(agentAfter.peak))
	if g := serverAfter.peak - serverBefore.rss; g > bound {
		t.Errorf("server peak RSS grew by %.1f MiB moving 1 GiB", mib(g))
	}
	if g := agentAfter.peak - agentBefore.rss; g > bound {
		t.Errorf("agent peak RSS grew by %.1f MiB moving 1 GiB", mib(g))
	}
	s.do(t, "DELETE", "/sandboxes/"+id+"/files?path=/tmp/big.bin", nil)
}
