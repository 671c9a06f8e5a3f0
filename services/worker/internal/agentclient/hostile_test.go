package agentclient_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/opensandbox/opensandbox/services/shared/agentapi"
	"github.com/opensandbox/opensandbox/services/worker/internal/agentclient"
)

// fakeAgent serves handler on a unix socket in this process, standing in
// for an agent that a hostile sandbox replaced with its own program.
func fakeAgent(t *testing.T, handler http.HandlerFunc) *agentclient.Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: handler}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	c := agentclient.New(sock)
	t.Cleanup(c.Close)
	return c
}

func frames(w http.ResponseWriter, fs ...func(http.ResponseWriter)) {
	w.Header().Set("Content-Type", agentapi.FramesContentType)
	for _, f := range fs {
		f(w)
	}
}

func frame(typ byte, payload []byte) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) { agentapi.WriteFrame(w, typ, payload) }
}

func exitFrame(e agentapi.ExecExit) func(http.ResponseWriter) {
	b, _ := json.Marshal(e)
	return frame(agentapi.FrameExit, b)
}

// Whatever a hostile agent answers, the worker believes no more output than
// it asked for and holds no more than a frame of it.
func TestHostileExecAnswersAreRefused(t *testing.T) {
	ctx := context.Background()
	req := agentapi.ExecRequest{Cmd: "x", MaxOutput: 1000}
	for name, h := range map[string]http.HandlerFunc{
		"announces more than the cap": func(w http.ResponseWriter, r *http.Request) {
			frames(w, exitFrame(agentapi.ExecExit{StdoutLen: 5000}))
		},
		"sends more than it announced": func(w http.ResponseWriter, r *http.Request) {
			frames(w, exitFrame(agentapi.ExecExit{StdoutLen: 10}), frame(agentapi.FrameStdout, make([]byte, 11)))
		},
		"sends less than it announced": func(w http.ResponseWriter, r *http.Request) {
			frames(w, exitFrame(agentapi.ExecExit{StdoutLen: 10}), frame(agentapi.FrameStdout, make([]byte, 9)))
		},
		"stderr before stdout is done": func(w http.ResponseWriter, r *http.Request) {
			frames(w, exitFrame(agentapi.ExecExit{StdoutLen: 10, StderrLen: 1}), frame(agentapi.FrameStderr, []byte("e")))
		},
		"no exit frame first": func(w http.ResponseWriter, r *http.Request) {
			frames(w, frame(agentapi.FrameStdout, []byte("hi")))
		},
		"a JSON answer over the cap": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]any{"exitCode": 0, "stdout": strings.Repeat("x", 5000)})
		},
	} {
		t.Run(name, func(t *testing.T) {
			c := fakeAgent(t, h)
			a, err := c.Exec(ctx, req)
			if err == nil {
				_, err = a.Result()
				a.Close()
			}
			if !errors.Is(err, agentclient.ErrMalformed) {
				t.Fatalf("got %v, want ErrMalformed", err)
			}
		})
	}
	// Control: a well-formed answer is taken.
	c := fakeAgent(t, func(w http.ResponseWriter, r *http.Request) {
		frames(w, exitFrame(agentapi.ExecExit{ExitCode: 2, StdoutLen: 3, StderrLen: 1}), frame(agentapi.FrameStdout, []byte("out")), frame(agentapi.FrameStderr, []byte("e")))
	})
	a, err := c.Exec(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	res, err := a.Result()
	a.Close()
	if err != nil || res.ExitCode != 2 || res.Stdout != "out" || res.Stderr != "e" {
		t.Fatalf("well-formed answer: %+v, %v", res, err)
	}
}

// An endless JSON answer is cut at the bound: the worker's heap does not
// grow with it.
func TestEndlessJSONAnswerIsRefused(t *testing.T) {
	c := fakeAgent(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`[{"name":"`))
		chunk := []byte(strings.Repeat("a", 64<<10))
		for range (1 << 30) / len(chunk) { // 1 GiB of one string
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := c.List(context.Background(), "/", 1)
	if !errors.Is(err, agentclient.ErrMalformed) {
		t.Fatalf("got %v, want ErrMalformed", err)
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grew := int64(after.TotalAlloc - before.TotalAlloc); grew > 256<<20 {
		t.Fatalf("reading the answer allocated %d MiB", grew>>20)
	}
}
