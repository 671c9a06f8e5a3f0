package agentclient

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/opensandbox/opensandbox/services/shared/agentapi"
	"github.com/opensandbox/opensandbox/services/shared/api"
)

// ErrMalformed is an agent answer that breaks the protocol: too large,
// lengths that do not add up, frames out of order. The sandbox's agent
// cannot be trusted to be ours, so nothing it sends is believed or held
// beyond the bounds the worker asked for.
var ErrMalformed = errors.New("malformed agent answer")

// ExecAnswer is a finished command whose output is still in the agent's
// answer: Output streams it, so the worker holds at most a frame of it.
type ExecAnswer struct {
	agentapi.ExecExit
	body   io.ReadCloser
	fr     *agentapi.FrameReader
	legacy *api.ProcessResult // an agent of an earlier version answered JSON
}

// Exec runs a command to completion. Close the answer when done with it.
func (c *Client) Exec(ctx context.Context, req agentapi.ExecRequest) (*ExecAnswer, error) {
	if req.MaxOutput <= 0 {
		req.MaxOutput = agentapi.DefaultMaxOutput
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(ctx, http.MethodPost, "/exec", nil, bytesReader(b), http.Header{"Accept": {agentapi.FramesContentType}})
	if err != nil {
		return nil, err
	}
	a := &ExecAnswer{body: resp.Body}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), agentapi.FramesContentType) {
		// JSON escapes a byte in at most 6, so this bounds a whole answer.
		limit := int64(2*6*req.MaxOutput + 64<<10)
		var res api.ProcessResult
		err := json.NewDecoder(io.LimitReader(resp.Body, limit)).Decode(&res)
		resp.Body.Close()
		if err != nil || len(res.Stdout) > req.MaxOutput || len(res.Stderr) > req.MaxOutput {
			return nil, fmt.Errorf("%w: exec answer: %v", ErrMalformed, err)
		}
		a.legacy = &res
		a.ExecExit = agentapi.ExecExit{
			ExitCode: res.ExitCode, TimedOut: res.TimedOut, DurationMs: res.DurationMs, OOMKilled: res.OOMKilled,
			StdoutLen: len(res.Stdout), StderrLen: len(res.Stderr),
			StdoutTruncated: res.StdoutTruncated, StderrTruncated: res.StderrTruncated,
		}
		return a, nil
	}
	a.fr = agentapi.NewFrameReader(bufio.NewReaderSize(resp.Body, 16<<10))
	typ, payload, err := a.fr.Next()
	if err == nil && typ != agentapi.FrameExit {
		err = fmt.Errorf("first frame %q, want exit", typ)
	}
	if err == nil {
		err = json.Unmarshal(payload, &a.ExecExit)
	}
	if err == nil && (a.StdoutLen < 0 || a.StderrLen < 0 || a.StdoutLen > req.MaxOutput || a.StderrLen > req.MaxOutput) {
		err = fmt.Errorf("output of %d and %d bytes over the cap of %d", a.StdoutLen, a.StderrLen, req.MaxOutput)
	}
	if err != nil {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: exec answer: %v", ErrMalformed, err)
	}
	return a, nil
}

// Output writes the command's stdout to stdout, then its stderr to stderr,
// exactly the lengths the answer announced.
func (a *ExecAnswer) Output(stdout, stderr io.Writer) error {
	if a.legacy != nil {
		if _, err := io.WriteString(stdout, a.legacy.Stdout); err != nil {
			return err
		}
		_, err := io.WriteString(stderr, a.legacy.Stderr)
		return err
	}
	want := []struct {
		typ byte
		n   int
		w   io.Writer
	}{{agentapi.FrameStdout, a.StdoutLen, stdout}, {agentapi.FrameStderr, a.StderrLen, stderr}}
	i, got := 0, 0
	for {
		for i < len(want) && got == want[i].n {
			i, got = i+1, 0
		}
		typ, payload, err := a.fr.Next()
		if err == io.EOF && i == len(want) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: exec output: %v", ErrMalformed, err)
		}
		if i == len(want) || typ != want[i].typ || got+len(payload) > want[i].n {
			return fmt.Errorf("%w: exec output: unexpected %q frame of %d bytes", ErrMalformed, typ, len(payload))
		}
		if _, err := want[i].w.Write(payload); err != nil {
			return err
		}
		got += len(payload)
	}
}

// Result reads the whole output into a ProcessResult.
func (a *ExecAnswer) Result() (api.ProcessResult, error) {
	var stdout, stderr strings.Builder
	stdout.Grow(a.StdoutLen)
	stderr.Grow(a.StderrLen)
	if err := a.Output(&stdout, &stderr); err != nil {
		return api.ProcessResult{}, err
	}
	return api.ProcessResult{
		ExitCode: a.ExitCode, Stdout: stdout.String(), Stderr: stderr.String(),
		StdoutTruncated: a.StdoutTruncated, StderrTruncated: a.StderrTruncated,
		TimedOut: a.TimedOut, DurationMs: a.DurationMs, OOMKilled: a.OOMKilled,
	}, nil
}

// Close releases the answer.
func (a *ExecAnswer) Close() error { return a.body.Close() }
