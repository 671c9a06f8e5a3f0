package runtime_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containers/podman/v5/pkg/bindings/network"
	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/shared/errs"
	"github.com/opensandbox/opensandbox/services/worker/runtime"
	"github.com/opensandbox/opensandbox/services/worker/sandbox"
	"github.com/opensandbox/opensandbox/services/worker/sandboxtest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// run runs a host command the test needs, failing the test if it fails.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// randomOctet is a random number 0-255.
func randomOctet() int {
	var b [1]byte
	rand.Read(b[:])
	return int(b[0])
}

// subnetSeq keeps the subnets one test binary asks for apart.
var subnetSeq atomic.Int32

// testNetwork returns a policy for a network and subnet of this test only
// (10.233.x.0/24, so parallel runs rarely meet), and removes the network
// and its firewall at cleanup.
func testNetwork(t *testing.T, rt *runtime.Podman, disabled bool) runtime.EgressPolicy {
	t.Helper()
	pol := runtime.EgressPolicy{
		Network:  "osbt" + sandboxtest.RandomID(),
		Subnet:   fmt.Sprintf("10.233.%d.0/24", (randomOctet()+int(subnetSeq.Add(97)))%256),
		Deny:     runtime.DefaultDeny,
		Disabled: disabled,
	}
	if err := rt.SetEgress(pol); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := rt.BindingsContext(context.Background())
		defer cancel()
		force := true
		if _, err := network.Remove(ctx, pol.Network, &network.RemoveOptions{Force: &force}); err != nil {
			t.Errorf("remove network %s: %v", pol.Network, err)
		}
		if err := runtime.RemoveFirewall(context.Background(), pol); err != nil {
			t.Errorf("remove firewall: %v", err)
		}
	})
	return pol
}

// gatewayOf is the first address of a subnet (the bridge, and the host as
// sandboxes see it).
func gatewayOf(subnet string) string {
	_, n, _ := net.ParseCIDR(subnet)
	ip := n.IP.To4()
	return fmt.Sprintf("%d.%d.%d.%d", ip[0], ip[1], ip[2], ip[3]+1)
}

// testHost starts an HTTP server in a network namespace of its own with a
// private address (10.234.x.y/30 on a veth pair), as a stand-in for the
// fleet's private hosts; it returns host:port. Everything is removed at
// cleanup.
func testHost(t *testing.T) string {
	t.Helper()
	id := sandboxtest.RandomID()
	ns, hostIf, nsIf := "osbt-"+id, "osbh"+id, "osbn"+id
	base := fmt.Sprintf("10.234.%d.%d", randomOctet(), randomOctet()&^3)
	_, n, _ := net.ParseCIDR(base + "/30")
	ip := n.IP.To4()
	hostIP := fmt.Sprintf("%d.%d.%d.%d", ip[0], ip[1], ip[2], ip[3]+1)
	nsIP := fmt.Sprintf("%d.%d.%d.%d", ip[0], ip[1], ip[2], ip[3]+2)

	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	run(t, "ip", "link", "add", hostIf, "type", "veth", "peer", "name", nsIf, "netns", ns)
	t.Cleanup(func() { exec.Command("ip", "link", "del", hostIf).Run() })
	run(t, "ip", "addr", "add", hostIP+"/30", "dev", hostIf)
	run(t, "ip", "link", "set", hostIf, "up")
	run(t, "ip", "-n", ns, "addr", "add", nsIP+"/30", "dev", nsIf)
	run(t, "ip", "-n", ns, "link", "set", nsIf, "up")
	run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	run(t, "ip", "-n", ns, "route", "add", "default", "via", hostIP)

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte("hello-from-host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort(nsIP, "8080")
	srv := exec.Command("ip", "netns", "exec", ns, "busybox", "httpd", "-f", "-p", addr, "-h", dir)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })

	client := &http.Client{Timeout: time.Second}
	sandboxtest.Eventually(t, 10*time.Second, "the host reaches the test host at "+addr, func() bool {
		resp, err := client.Get("http://" + addr + "/")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(b), "hello-from-host")
	})
	return addr
}

// acceptLikeNetavark does what Podman's network stack does on a fresh
// host: accept everything from the sandbox subnet at the top of FORWARD
// (and, for good measure, INPUT), in every iptables backend the host has,
// plus an nftables base chain that accepts before ours. Removed at cleanup.
func acceptLikeNetavark(t *testing.T, subnet string) {
	t.Helper()
	for _, bin := range []string{"iptables-nft", "iptables-legacy"} {
		if _, err := exec.LookPath(bin); err != nil {
			continue
		}
		for _, chain := range []string{"FORWARD", "INPUT"} {
			run(t, bin, "-w", "10", "-I", chain, "1", "-s", subnet, "-j", "ACCEPT")
			t.Cleanup(func() { exec.Command(bin, "-w", "10", "-D", chain, "-s", subnet, "-j", "ACCEPT").Run() })
		}
	}
	table := "osbt-accept-" + sandboxtest.RandomID()
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(fmt.Sprintf(`table inet %s {
  chain forward { type filter hook forward priority filter - 20; policy accept; ip saddr %s accept; }
  chain input { type filter hook input priority filter - 20; policy accept; ip saddr %s accept; }
}
`, table, subnet, subnet))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("nft", "delete", "table", "inet", table).Run() })
}

// fetch asks host:port for a page from inside a sandbox (busybox nc; the
// static busybox wget crashes on lookups) and reports whether it got it.
func fetch(t *testing.T, m *sandbox.Manager, id, hostport string) (bool, string) {
	t.Helper()
	h, p, _ := net.SplitHostPort(hostport)
	res, err := m.Exec(context.Background(), id, api.ProcessConfig{Cmd: `printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 ` + h + " " + p + " 2>&1; echo rc=$?"})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(res.Stdout, "hello-from-host"), res.Stdout
}

// deleteTables removes the policy's nftables tables, as a flush or a
// firewall reload would.
func deleteTables(t *testing.T, pol runtime.EgressPolicy) {
	t.Helper()
	run(t, "nft", "delete", "table", "inet", "osb-"+pol.Network)
	run(t, "nft", "delete", "table", "bridge", "osb-"+pol.Network)
}

func tablesPresent(pol runtime.EgressPolicy) bool {
	return exec.Command("nft", "list", "table", "inet", "osb-"+pol.Network).Run() == nil &&
		exec.Command("nft", "list", "table", "bridge", "osb-"+pol.Network).Run() == nil
}

// A networked sandbox cannot reach a private host, the host itself (but its
// DNS) or another sandbox, although iptables and nftables rules accept its
// subnet first (what netavark installs); the firewall is restored after its
// tables are deleted, by the next networked create and by a reconciler tick.
// Controls: with the tables gone, and on a network whose firewall is off, the
// same requests succeed, so every refusal comes from the firewall.
func TestEgressFirewall(t *testing.T) {
	ctx := context.Background()
	private := testHost(t)

	// A server on every host address, for the host rule.
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	port := fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "hello-from-host") })}
	go srv.Serve(ln)
	defer srv.Close()

	rt := sandboxtest.Runtime(t)
	pol := testNetwork(t, rt, false)
	fm := runtime.NewFirewallMetrics(prometheus.NewRegistry())
	rt.Instrument(sandboxtest.Logger(t), fm)
	acceptLikeNetavark(t, pol.Subnet)
	cfg := sandboxtest.Config(t)
	cfg.ReconcileInterval = time.Hour // only creates repair, until m2 below
	m := sandboxtest.Manager(t, rt, cfg)
	a, err := m.Create(ctx, api.SandboxConfig{NetworkEnabled: true}, sandbox.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Create(ctx, api.SandboxConfig{NetworkEnabled: true}, sandbox.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if testutil.ToFloat64(fm.Verified) != 1 {
		t.Error("opensandbox_egress_firewall_verified is not 1 after a networked create")
	}

	gw := gatewayOf(pol.Subnet)
	if ok, out := fetch(t, m, a.SandboxID, private); ok {
		t.Fatalf("sandbox reached the private test host at %s: %s", private, out)
	}
	if ok, out := fetch(t, m, a.SandboxID, net.JoinHostPort(gw, port)); ok {
		t.Fatalf("sandbox reached the host through its gateway: %s", out)
	}
	res, _ := m.Exec(ctx, a.SandboxID, api.ProcessConfig{Cmd: "cat /proc/sys/net/ipv6/conf/all/disable_ipv6"})
	if res.Stdout != "1\n" {
		t.Errorf("IPv6 is not disabled in the sandbox: %q", res.Stdout)
	}
	// Sandbox to sandbox: b serves, a tries. DNS on the gateway still works.
	if _, err := m.StartProcess(ctx, b.SandboxID, api.ProcessConfig{Cmd: "mkdir -p /w && echo hello-from-host > /w/index.html && httpd -f -p 8000 -h /w"}); err != nil {
		t.Fatal(err)
	}
	ip, _ := m.Exec(ctx, b.SandboxID, api.ProcessConfig{Cmd: "ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1"})
	peer := net.JoinHostPort(strings.TrimSpace(ip.Stdout), "8000")
	sandboxtest.Eventually(t, 10*time.Second, "the peer's web server is up", func() bool {
		ok, _ := fetch(t, m, b.SandboxID, "127.0.0.1:8000")
		return ok
	})
	if ok, out := fetch(t, m, a.SandboxID, peer); ok {
		t.Fatalf("sandbox reached another sandbox at %s: %s", peer, out)
	}
	dns, _ := m.Exec(ctx, a.SandboxID, api.ProcessConfig{Cmd: "nslookup osb-" + b.SandboxID + " " + gw})
	if !strings.Contains(dns.Stdout, strings.TrimSpace(ip.Stdout)) {
		t.Errorf("DNS on the gateway does not answer for the peer's name: %q %q", dns.Stdout, dns.Stderr)
	}

	// Control: a network whose firewall is off reaches all three.
	rtOff := sandboxtest.Runtime(t)
	polOff := testNetwork(t, rtOff, true)
	mOff := sandboxtest.Manager(t, rtOff, sandboxtest.Config(t))
	c, err := mOff.Create(ctx, api.SandboxConfig{NetworkEnabled: true}, sandbox.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for what, target := range map[string]string{
		"the private test host": private, "the host": net.JoinHostPort(gatewayOf(polOff.Subnet), port), "the peer sandbox": peer,
	} {
		if ok, out := fetch(t, mOff, c.SandboxID, target); !ok {
			t.Fatalf("control: without the firewall %s at %s is not reachable, so the test proves nothing: %s", what, target, out)
		}
	}

	// A flush: with the tables gone the attack works (control)...
	deleteTables(t, pol)
	if ok, out := fetch(t, m, a.SandboxID, private); !ok {
		t.Fatalf("control: with the firewall's tables deleted the private host is still not reachable: %s", out)
	}
	// ...and the next networked create puts them back.
	if _, err := m.Create(ctx, api.SandboxConfig{NetworkEnabled: true}, sandbox.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if ok, out := fetch(t, m, a.SandboxID, private); ok {
		t.Fatalf("after a networked create repaired the firewall, the sandbox still reached %s: %s", private, out)
	}
	if n := testutil.ToFloat64(fm.Repairs); n != 1 {
		t.Errorf("opensandbox_egress_firewall_repairs_total = %v after one repair", n)
	}

	// Again, with nothing created: one reconciler tick puts them back.
	deleteTables(t, pol)
	cfg2 := sandboxtest.Config(t)
	cfg2.ReconcileInterval = 100 * time.Millisecond
	sandboxtest.Manager(t, rt, cfg2)
	sandboxtest.Eventually(t, 30*time.Second, "the reconciler restores the firewall's tables", func() bool { return tablesPresent(pol) })
	if ok, out := fetch(t, m, a.SandboxID, private); ok {
		t.Fatalf("after the reconciler repaired the firewall, the sandbox still reached %s: %s", private, out)
	}
	if ok, out := fetch(t, m, a.SandboxID, peer); ok {
		t.Fatalf("after the reconciler repaired the firewall, the sandbox reached its peer: %s", out)
	}
	if n := testutil.ToFloat64(fm.Repairs); n != 2 {
		t.Errorf("opensandbox_egress_firewall_repairs_total = %v after two repairs", n)
	}
}

// A rule someone adds to our own tables (an accept in front of the deny
// rules) is found and removed, and the repair is counted.
func TestEgressFirewallAlteredTableIsRepaired(t *testing.T) {
	ctx := context.Background()
	rt := sandboxtest.Runtime(t)
	pol := testNetwork(t, rt, false)
	fm := runtime.NewFirewallMetrics(prometheus.NewRegistry())
	rt.Instrument(sandboxtest.Logger(t), fm)
	if err := rt.KeepFirewall(ctx); err != nil {
		t.Fatal(err)
	}
	table := "osb-" + pol.Network
	run(t, "nft", "insert", "rule", "inet", table, "from_sandbox", "accept")
	if out := run(t, "nft", "list", "chain", "inet", table, "from_sandbox"); !strings.Contains(out, "\t\taccept\n") {
		t.Fatalf("control: the inserted accept rule is not in the chain: %s", out)
	}
	if err := rt.KeepFirewall(ctx); err != nil {
		t.Fatal(err)
	}
	if out := run(t, "nft", "list", "chain", "inet", table, "from_sandbox"); strings.Contains(out, "\t\taccept\n") {
		t.Fatalf("the inserted accept rule survived a check: %s", out)
	}
	if n := testutil.ToFloat64(fm.Repairs); n != 1 {
		t.Errorf("repairs = %v, want 1", n)
	}
	// An unchanged table is left alone.
	if err := rt.KeepFirewall(ctx); err != nil || testutil.ToFloat64(fm.Repairs) != 1 {
		t.Errorf("a check of an intact table repaired it (or failed: %v)", err)
	}
}

// The iptables chains of the version before the nftables table are removed
// with their jumps when the firewall is installed.
func TestEgressFirewallRemovesOldIptablesChains(t *testing.T) {
	rt := sandboxtest.Runtime(t)
	pol := testNetwork(t, rt, false)
	suffix := strings.ToUpper(pol.Network)
	fwd, host := "OSB-FWD-"+suffix, "OSB-HOST-"+suffix
	for builtin, chain := range map[string]string{"FORWARD": fwd, "INPUT": host} {
		run(t, "iptables", "-w", "10", "-N", chain)
		run(t, "iptables", "-w", "10", "-A", chain, "-j", "RETURN")
		run(t, "iptables", "-w", "10", "-I", builtin, "1", "-s", pol.Subnet, "-j", chain)
	}
	if err := rt.KeepFirewall(context.Background()); err != nil {
		t.Fatal(err)
	}
	for builtin, chain := range map[string]string{"FORWARD": fwd, "INPUT": host} {
		if out := run(t, "iptables", "-w", "10", "-S", builtin); strings.Contains(out, chain) {
			t.Errorf("a jump to %s is left in %s:\n%s", chain, builtin, out)
		}
		if exec.Command("iptables", "-w", "10", "-S", chain).Run() == nil {
			t.Errorf("chain %s is left", chain)
		}
	}
}

// A networked create on a host where the firewall cannot be installed (no
// nft) fails with a clear error and leaves nothing; sandboxes without a
// network are unaffected; with nft back, the same create works (control).
func TestNetworkedCreateFailsWithoutFirewall(t *testing.T) {
	ctx := context.Background()
	rt := sandboxtest.Runtime(t)
	testNetwork(t, rt, false)
	m := sandboxtest.Manager(t, rt, sandboxtest.Config(t))
	path := os.Getenv("PATH")
	t.Setenv("PATH", t.TempDir()) // no nft, no iptables

	_, err := m.Create(ctx, api.SandboxConfig{NetworkEnabled: true}, sandbox.CreateOptions{})
	var e *errs.Error
	if !errors.As(err, &e) || e.Code != "egress_firewall_unavailable" || e.Kind != errs.KindUnavailable {
		t.Fatalf("networked create without nft: %v, want 503 egress_firewall_unavailable", err)
	}
	if n := len(m.List(ctx, "")); n != 0 {
		t.Fatalf("%d sandboxes after a refused create", n)
	}
	if _, err := m.Create(ctx, api.SandboxConfig{}, sandbox.CreateOptions{}); err != nil {
		t.Fatalf("a sandbox without network failed too: %v", err)
	}

	t.Setenv("PATH", path)
	if _, err := m.Create(ctx, api.SandboxConfig{NetworkEnabled: true}, sandbox.CreateOptions{}); err != nil {
		t.Fatalf("control: with nft back the networked create still fails: %v", err)
	}
}

// The check before every networked create: "unchanged" is the common case
// (no nftables commit since the last check: one netlink round trip),
// "ruleset changed" lists and hashes both tables (two nft runs).
func BenchmarkKeepFirewall(b *testing.B) {
	ctx := context.Background()
	rt := sandboxtest.Runtime(b)
	pol := runtime.EgressPolicy{Network: "osbt" + sandboxtest.RandomID(), Subnet: fmt.Sprintf("10.233.%d.0/24", randomOctet()), Deny: runtime.DefaultDeny}
	if err := rt.SetEgress(pol); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		c, cancel := rt.BindingsContext(ctx)
		defer cancel()
		force := true
		network.Remove(c, pol.Network, &network.RemoveOptions{Force: &force})
		runtime.RemoveFirewall(ctx, pol)
	})
	if err := rt.KeepFirewall(ctx); err != nil {
		b.Fatal(err)
	}
	b.Run("unchanged", func(b *testing.B) {
		for b.Loop() {
			if err := rt.KeepFirewall(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ruleset changed", func(b *testing.B) {
		bump := "osbt-bump-" + sandboxtest.RandomID()
		defer exec.Command("nft", "delete", "table", "inet", bump).Run()
		for i := 0; b.Loop(); i++ {
			b.StopTimer()
			verb := []string{"add", "delete"}[i%2] // any commit moves the generation
			if out, err := exec.Command("nft", verb, "table", "inet", bump).CombinedOutput(); err != nil {
				b.Fatalf("nft %s table: %v: %s", verb, err, out)
			}
			b.StartTimer()
			if err := rt.KeepFirewall(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}
