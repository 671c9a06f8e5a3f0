package runtime

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrFirewall wraps every failure to verify or install the egress firewall;
// a networked create that meets it is refused, never run unfiltered.
var ErrFirewall = errors.New("egress firewall cannot be verified")

// FirewallKeeper is a Runtime that keeps a host firewall for networked
// sandboxes. The sandbox manager's reconciler calls KeepFirewall on every
// tick, so a flush or a firewall reload is repaired even when no sandbox is
// being created.
type FirewallKeeper interface {
	// KeepFirewall verifies the firewall and reinstalls it if it is
	// missing or altered; an error means it is not in place.
	KeepFirewall(ctx context.Context) error
}

// FirewallMetrics are the egress firewall's Prometheus metrics.
type FirewallMetrics struct {
	Repairs  prometheus.Counter // found missing or altered, reinstalled
	Verified prometheus.Gauge   // 1 while the last check found it intact
}

// NewFirewallMetrics registers the metrics with reg.
func NewFirewallMetrics(reg prometheus.Registerer) *FirewallMetrics {
	m := &FirewallMetrics{
		Repairs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "opensandbox_egress_firewall_repairs_total",
			Help: "Times the egress firewall was found missing or altered and reinstalled.",
		}),
		Verified: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "opensandbox_egress_firewall_verified",
			Help: "1 while the egress firewall of networked sandboxes is verified in place, else 0.",
		}),
	}
	reg.MustRegister(m.Repairs, m.Verified)
	return m
}

// nftTimeout bounds one nft command.
const nftTimeout = 10 * time.Second

// firewall keeps one policy's nftables tables in place. Install loads the
// whole ruleset in one nft transaction; verification compares a digest of
// nft's listing of the tables with the one taken at install, and skips even
// that while the kernel's ruleset generation (bumped by every nftables
// commit, by anyone) has not moved since the last good check.
type firewall struct {
	pol     EgressPolicy
	bridge  string
	log     *slog.Logger
	metrics *FirewallMetrics

	mu       sync.Mutex
	digest   [32]byte // of the listing right after the first install; zero before
	gen      uint32   // ruleset generation at the last good check
	genValid bool
	failing  bool // the last check failed (log the change, not every tick)
}

func newFirewall(pol EgressPolicy, bridge string, log *slog.Logger, m *FirewallMetrics) *firewall {
	return &firewall{pol: pol, bridge: bridge, log: log, metrics: m}
}

// keep verifies the tables and repairs them; see FirewallKeeper.
func (f *firewall) keep(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(ctx); err != nil {
		f.metrics.Verified.Set(0)
		if !f.failing {
			f.log.Error("egress firewall is not in place; networked sandboxes are refused", "network", f.pol.Network, "err", err)
		}
		f.failing = true
		return fmt.Errorf("%w: %w", ErrFirewall, err)
	}
	if f.failing {
		f.log.Info("egress firewall is in place again", "network", f.pol.Network)
	}
	f.failing = false
	f.metrics.Verified.Set(1)
	return nil
}

func (f *firewall) check(ctx context.Context) error {
	if f.digest == ([32]byte{}) {
		// First use in this process: whatever is there (an older
		// version's tables, nothing) is replaced.
		if err := removeOldChains(ctx, f.pol); err != nil {
			return err
		}
		return f.install(ctx, true)
	}
	gen, genErr := nftGeneration()
	if genErr == nil && f.genValid && gen == f.gen {
		return nil // no nftables commit since the last good check
	}
	listing, err := f.list(ctx)
	if err == nil && sha256.Sum256(listing) == f.digest {
		f.gen, f.genValid = gen, genErr == nil
		return nil
	}
	what := "altered"
	if err != nil {
		what = "missing"
	}
	if err := f.install(ctx, false); err != nil {
		return err
	}
	f.metrics.Repairs.Inc()
	f.log.Warn("egress firewall was "+what+"; reinstalled", "network", f.pol.Network, "table", f.pol.table())
	return nil
}

// install loads the ruleset and confirms the result: at the first install
// its listing becomes the reference, later it must equal the reference.
func (f *firewall) install(ctx context.Context, first bool) error {
	if out, err := nft(ctx, f.pol.ruleset(f.bridge), "-f", "-"); err != nil {
		return fmt.Errorf("load nftables table %s: %w: %s", f.pol.table(), err, out)
	}
	gen, genErr := nftGeneration()
	listing, err := f.list(ctx)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(listing)
	if first {
		f.digest = sum
	} else if sum != f.digest {
		return fmt.Errorf("nftables table %s differs from the one installed at start right after reinstalling it; something else is rewriting it", f.pol.table())
	}
	f.gen, f.genValid = gen, genErr == nil
	return nil
}

// list returns nft's listing of both tables.
func (f *firewall) list(ctx context.Context) ([]byte, error) {
	var all []byte
	// One nft call per table: nft 1.0.6 fails to list two tables in one call.
	for _, family := range []string{"inet", "bridge"} {
		out, err := nft(ctx, "", "list", "table", family, f.pol.table())
		if err != nil {
			return nil, fmt.Errorf("list nftables table %s %s: %w: %s", family, f.pol.table(), err, out)
		}
		all = append(all, out...)
	}
	return all, nil
}

// table is the name of the policy's nftables tables (one inet, one bridge).
func (p EgressPolicy) table() string { return "osb-" + p.Network }

// ruleset renders the policy as an nft script that replaces both tables in
// one transaction (declaring a table before deleting it makes the delete
// succeed when the table is absent).
//
// The base chains hook forward and input at priority filter - 10, so they
// run before the filter chains of iptables (nft or legacy backend, both at
// priority 0) and netavark. In netfilter a drop or reject in any base chain
// is final, while an accept only ends that chain: whatever others accept,
// what is refused here stays refused.
func (p EgressPolicy) ruleset(bridge string) string {
	subnet, _ := ipv4CIDR(p.Subnet)
	gw := p.gateway().String()
	t := p.table()
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	for _, family := range []string{"inet", "bridge"} {
		w("table %s %s", family, t)
		w("delete table %s %s", family, t)
	}
	w("table inet %s {", t)
	// Traffic from the sandbox bridge, or with a sandbox source address,
	// is judged; all else passes to the other chains untouched.
	for _, hook := range []string{"forward", "input"} {
		target := map[string]string{"forward": "from_sandbox", "input": "to_host"}[hook]
		w("  chain %s {", hook)
		w("    type filter hook %s priority filter - 10; policy accept;", hook)
		w("    iifname %q jump %s", bridge, target)
		w("    ip saddr %s jump %s", subnet, target)
		w("  }")
	}
	// Both judging chains start alike: IPv4 only (sandboxes have IPv6 off,
	// and nothing from them may bypass the IPv4 rules), no foreign source
	// addresses (IP_FREEBIND needs no privilege), and only replies for
	// connections opened towards the sandbox pass regardless: connections
	// the sandbox opens are judged packet by packet, so one opened while
	// the table was missing is cut at its repair.
	head := []string{
		"meta nfproto != ipv4 drop",
		"ip saddr != " + subnet + " drop",
		"ct direction reply accept",
	}
	w("  chain from_sandbox {")
	for _, r := range head {
		w("    %s", r)
	}
	w("    ip daddr %s reject with icmp type net-prohibited", subnet) // other sandboxes, whatever Allow says
	for _, c := range p.Allow {
		c, _ = ipv4CIDR(c)
		w("    ip daddr %s accept", c)
	}
	for _, c := range p.Deny {
		c, _ = ipv4CIDR(c)
		w("    ip daddr %s reject with icmp type net-prohibited", c)
	}
	w("  }")
	w("  chain to_host {")
	for _, r := range head {
		w("    %s", r)
	}
	for _, c := range p.Allow {
		c, _ = ipv4CIDR(c)
		w("    ip daddr %s accept", c)
	}
	for _, proto := range []string{"udp", "tcp"} {
		w("    ip daddr %s %s dport 53 accept", gw, proto)
	}
	w("    reject with icmp type port-unreachable")
	w("  }")
	w("}")
	// Sandbox to sandbox on the bridge itself never reaches the IP hooks
	// unless br_netfilter is loaded; the bridge family sees it either way.
	// (Bridge reject and the bridge-name match are not in every kernel;
	// drop and addresses are.)
	w("table bridge %s {", t)
	w("  chain forward {")
	w("    type filter hook forward priority filter - 10; policy accept;")
	w("    ip saddr %s drop", subnet)
	w("    ip daddr %s drop", subnet)
	w("  }")
	w("}")
	return b.String()
}

// removeTables deletes the policy's tables; absent ones are no error.
func removeTables(ctx context.Context, pol EgressPolicy) error {
	var script strings.Builder
	for _, family := range []string{"inet", "bridge"} {
		fmt.Fprintf(&script, "table %s %s\ndelete table %s %s\n", family, pol.table(), family, pol.table())
	}
	if out, err := nft(ctx, script.String(), "-f", "-"); err != nil {
		return fmt.Errorf("delete nftables table %s: %w: %s", pol.table(), err, out)
	}
	return nil
}

// removeOldChains deletes the iptables chains (OSB-FWD-*, OSB-HOST-*) and
// their jumps that versions before the nftables table installed for this
// network, so they do not linger. Without iptables there is nothing to do.
func removeOldChains(ctx context.Context, pol EgressPolicy) error {
	if _, err := exec.LookPath("iptables"); err != nil {
		return nil
	}
	suffix := strings.ToUpper(pol.Network)
	if len(suffix) > 16 {
		suffix = suffix[:16]
	}
	for builtin, chain := range map[string]string{"FORWARD": "OSB-FWD-" + suffix, "INPUT": "OSB-HOST-" + suffix} {
		out, err := iptables(ctx, "-S", builtin)
		if err != nil {
			return fmt.Errorf("iptables -S %s: %w: %s", builtin, err, out)
		}
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) < 4 || f[0] != "-A" || f[len(f)-2] != "-j" || f[len(f)-1] != chain {
				continue
			}
			f[0] = "-D"
			if out, err := iptables(ctx, f...); err != nil {
				return fmt.Errorf("iptables %s: %w: %s", strings.Join(f, " "), err, out)
			}
		}
		if _, err := iptables(ctx, "-S", chain); err != nil {
			continue // no such chain
		}
		for _, args := range [][]string{{"-F", chain}, {"-X", chain}} {
			if out, err := iptables(ctx, args...); err != nil {
				return fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, out)
			}
		}
	}
	return nil
}

// RemoveFirewall deletes a policy's tables and any chains an older version
// left (tests, decommissioning).
func RemoveFirewall(ctx context.Context, pol EgressPolicy) error {
	return errors.Join(removeTables(ctx, pol), removeOldChains(ctx, pol))
}

func nft(ctx context.Context, stdin string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, nftTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nft", args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return stderr.Bytes(), err
	}
	return out, nil
}

func iptables(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "iptables", append([]string{"-w", "10"}, args...)...).CombinedOutput()
	return string(out), err
}

// quietLogger discards everything; a runtime without Instrument logs nothing.
func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
