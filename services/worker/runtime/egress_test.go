package runtime_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/worker/runtime"
	"github.com/opensandbox/opensandbox/services/worker/sandbox"
	"github.com/opensandbox/opensandbox/services/worker/sandboxtest"
)

// hostIP is an address of this machine that a sandbox could try to reach.
func hostIP(t *testing.T) string {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ip, ok := a.(*net.IPNet); ok && ip.IP.To4() != nil && !ip.IP.IsLoopback() && !strings.HasPrefix(ip.IP.String(), "10.231.") && !strings.HasPrefix(ip.IP.String(), "10.88.") {
			return ip.IP.String()
		}
	}
	t.Fatal("no non-loopback IPv4 address on this host")
	return ""
}

// fetch asks host:port for a page from inside a sandbox (busybox nc; the
// static busybox wget crashes on lookups) and reports whether it got it.
func fetch(t *testing.T, m *sandbox.Manager, id, hostport string) (bool, string) {
	h, p, _ := net.SplitHostPort(hostport)
	res, err := m.Exec(context.Background(), id, api.ProcessConfig{Cmd: `printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 ` + h + " " + p + " 2>&1; echo rc=$?"})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(res.Stdout, "hello-from-host"), res.Stdout
}

// A networked sandbox cannot reach the host, private addresses or other
// sandboxes; the same request works from a network whose policy allows it,
// so the refusal comes from the firewall and nothing else.
func TestEgressFirewall(t *testing.T) {
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "hello-from-host") })}
	go srv.Serve(ln)
	defer srv.Close()
	host := hostIP(t)
	url := net.JoinHostPort(host, fmt.Sprint(port))

	// Default policy, default network.
	rt := sandboxtest.Runtime(t)
	m := sandboxtest.Manager(t, rt, sandboxtest.Config(t))
	a, err := m.Create(context.Background(), api.SandboxConfig{NetworkEnabled: true}, sandbox.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Create(context.Background(), api.SandboxConfig{NetworkEnabled: true}, sandbox.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ok, out := fetch(t, m, a.SandboxID, url); ok {
		t.Fatalf("sandbox reached the host at %s: %s", url, out)
	}
	gw := "10.231.0.1"
	if ok, out := fetch(t, m, a.SandboxID, net.JoinHostPort(gw, fmt.Sprint(port))); ok {
		t.Fatalf("sandbox reached the host through its gateway: %s", out)
	}
	for _, cmd := range []string{"ls /proc/sys/net/ipv6 2>/dev/null; cat /proc/sys/net/ipv6/conf/all/disable_ipv6"} {
		res, _ := m.Exec(context.Background(), a.SandboxID, api.ProcessConfig{Cmd: cmd})
		if !strings.HasSuffix(res.Stdout, "1\n") {
			t.Errorf("IPv6 is not disabled in the sandbox: %q", res.Stdout)
		}
	}
	// Sandbox to sandbox: b serves, a tries.
	if _, err := m.StartProcess(context.Background(), b.SandboxID, api.ProcessConfig{Cmd: "mkdir -p /w && echo hello-from-host > /w/index.html && httpd -f -p 8000 -h /w"}); err != nil {
		t.Fatal(err)
	}
	ip, _ := m.Exec(context.Background(), b.SandboxID, api.ProcessConfig{Cmd: "ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1"})
	peer := strings.TrimSpace(ip.Stdout)
	sandboxtest.Eventually(t, 10*time.Second, "the peer's web server is up", func() bool {
		ok, _ := fetch(t, m, b.SandboxID, "127.0.0.1:8000")
		return ok
	})
	if ok, out := fetch(t, m, a.SandboxID, peer+":8000"); ok {
		t.Fatalf("sandbox reached another sandbox at %s: %s", peer, out)
	}

	// Control: a network whose policy allows the host address.
	id := sandboxtest.RandomID()
	pol := runtime.EgressPolicy{Network: "osbtest" + id, Subnet: "10.232." + fmt.Sprint(int(id[0])%200) + ".0/24", Deny: runtime.DefaultDeny, Allow: []string{host + "/32"}}
	rt2 := sandboxtest.Runtime(t)
	if err := rt2.SetEgress(pol); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		runtime.RemoveFirewall(context.Background(), pol)
		exec.Command("podman", "network", "rm", "-f", pol.Network).Run()
	})
	m2 := sandboxtest.Manager(t, rt2, sandboxtest.Config(t))
	c, err := m2.Create(context.Background(), api.SandboxConfig{NetworkEnabled: true}, sandbox.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ok, out := fetch(t, m2, c.SandboxID, url); !ok {
		t.Fatalf("control: an allowed address is not reachable, so the test proves nothing: %s", out)
	}
}
