package server

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/opensandbox/opensandbox/services/shared/api"
)

// Browsers cannot set headers on a WebSocket: in server mode the sandbox
// token rides as the "bearer.<jwt>" subprotocol straight to the worker, and
// a token for another sandbox is refused before the upgrade.
func TestServerModeTerminalWithSubprotocolToken(t *testing.T) {
	c := startCluster(t, nil)
	c.startWorker(t, workerOpts{region: "eu"})
	var a, b api.Sandbox
	c.cp.json(t, "POST", "/sandboxes", api.SandboxConfig{TemplateID: "busybox"}, 201, &a)
	c.cp.json(t, "POST", "/sandboxes", api.SandboxConfig{TemplateID: "busybox"}, 201, &b)

	var sess api.PTYSession
	resp, body := direct(a).do(t, "POST", "/sandboxes/"+a.SandboxID+"/pty", strings.NewReader(`{"cols":80,"rows":24}`), bearer(a.Token)...)
	if resp.StatusCode != 201 {
		t.Fatalf("create pty: %d %s", resp.StatusCode, body)
	}
	decode(t, body, &sess)
	wsURL := "ws" + strings.TrimPrefix(a.ConnectURL, "http") + "/sandboxes/" + a.SandboxID + "/pty/" + sess.SessionID

	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, Subprotocols: []string{"bearer." + b.Token}}
	_, resp, err := d.Dial(wsURL, http.Header{})
	if err == nil || resp == nil || resp.StatusCode != 403 {
		t.Fatalf("another sandbox's token: %v %v", err, resp)
	}
	d.Subprotocols = []string{"bearer." + a.Token}
	ws, resp, err := d.Dial(wsURL, http.Header{})
	if err != nil {
		t.Fatalf("dial with subprotocol token: %v (%v)", err, resp)
	}
	defer ws.Close()
	if ws.Subprotocol() != "bearer."+a.Token {
		t.Fatalf("subprotocol not echoed: %q", ws.Subprotocol())
	}
	if err := ws.WriteMessage(websocket.BinaryMessage, []byte("echo via-$((6*7))\n")); err != nil {
		t.Fatal(err)
	}
	var screen strings.Builder
	ws.SetReadDeadline(time.Now().Add(15 * time.Second))
	for !strings.Contains(screen.String(), "via-42") {
		_, msg, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("read: %v; screen %q", err, screen.String())
		}
		screen.Write(msg)
	}
	// None of it touched the control plane.
	for route := range requestsByRoute(t, c.reg) {
		if isDataPath(route) {
			t.Fatalf("control plane served %s", route)
		}
	}
}
