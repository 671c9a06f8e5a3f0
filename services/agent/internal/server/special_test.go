package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/agentapi"
)

// A device that never ends is read up to the cap, and a FIFO is read as cat
// reads it (a FIFO no one writes ends at the deadline, specialFileWait).
func TestReadOfSpecialFilesEnds(t *testing.T) {
	srv, home := newServer(t)
	start := time.Now()
	resp, body := call(t, srv, "GET", "/files", url.Values{"path": {"/dev/zero"}}, nil)
	if resp.StatusCode != 200 || len(body) != specialFileMax {
		t.Fatalf("/dev/zero: %d, %d bytes; want 200 and %d bytes", resp.StatusCode, len(body), specialFileMax)
	}
	fifo := filepath.Join(home, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	// A writer that comes a moment later is read to its end, as cat would.
	go func() {
		time.Sleep(300 * time.Millisecond)
		if f, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			f.WriteString("through the pipe\n")
			f.Close()
		}
	}()
	resp, body = call(t, srv, "GET", "/files", url.Values{"path": {fifo}}, nil)
	if resp.StatusCode != 200 || string(body) != "through the pipe\n" {
		t.Fatalf("fifo: %d, %q", resp.StatusCode, body)
	}
	if d := time.Since(start); d > specialFileWait {
		t.Fatalf("reads took %s", d)
	}
}

// The framed exec answer carries the exit first, then exactly the output
// it announced, stdout before stderr.
func TestExecFramedAnswer(t *testing.T) {
	srv, _ := newServer(t)
	b, _ := json.Marshal(agentapi.ExecRequest{Cmd: "head -c 200000 /dev/zero; printf err >&2; exit 3", Shell: true, MaxOutput: 150000})
	req, _ := newRequest(srv.URL+"/exec", b)
	req.Header.Set("Accept", agentapi.FramesContentType)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != agentapi.FramesContentType {
		t.Fatalf("content type %q", ct)
	}
	fr := agentapi.NewFrameReader(resp.Body)
	typ, payload, err := fr.Next()
	if err != nil || typ != agentapi.FrameExit {
		t.Fatalf("first frame %q, %v", typ, err)
	}
	var exit agentapi.ExecExit
	json.Unmarshal(payload, &exit)
	if exit.ExitCode != 3 || exit.StdoutLen != 150000 || !exit.StdoutTruncated || exit.StderrLen != 3 || exit.StderrTruncated {
		t.Fatalf("exit frame %+v", exit)
	}
	var stdout, stderr bytes.Buffer
	for {
		typ, payload, err := fr.Next()
		if err != nil {
			break
		}
		switch typ {
		case agentapi.FrameStdout:
			if stderr.Len() > 0 {
				t.Fatal("stdout after stderr")
			}
			stdout.Write(payload)
		case agentapi.FrameStderr:
			stderr.Write(payload)
		default:
			t.Fatalf("unexpected frame %q", typ)
		}
	}
	if stdout.Len() != 150000 || stderr.String() != "err" {
		t.Fatalf("stdout %d bytes, stderr %q", stdout.Len(), stderr.String())
	}
}

func newRequest(u string, body []byte) (*http.Request, error) {
	return http.NewRequest("POST", u, bytes.NewReader(body))
}
