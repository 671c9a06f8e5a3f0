package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/opensandbox/opensandbox/services/shared/agentapi"
)

// BenchmarkExec is one command through the agent's HTTP API, framed as the
// worker asks for it: the agent's share of every exec.
func BenchmarkExec(b *testing.B) {
	srv, _ := newServer(b)
	body, _ := json.Marshal(agentapi.ExecRequest{Cmd: "echo hi", Shell: true})
	for b.Loop() {
		req, _ := http.NewRequest("POST", srv.URL+"/exec", bytes.NewReader(body))
		req.Header.Set("Accept", agentapi.FramesContentType)
		resp, err := srv.Client().Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
