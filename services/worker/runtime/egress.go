package runtime

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"

	"github.com/containers/podman/v5/pkg/bindings/network"
	nettypes "go.podman.io/common/libnetwork/types"
)

// EgressPolicy confines sandboxes that have a network: they reach the
// internet, but not private or link-local addresses (other hosts of the
// fleet, NATS, the cloud metadata service), not each other, and not the
// host itself except for DNS.
type EgressPolicy struct {
	Network  string   // Podman network of networked sandboxes
	Subnet   string   // its IPv4 subnet
	Deny     []string // destinations refused, CIDRs
	Allow    []string // exceptions to Deny (and to the host rule), CIDRs
	Disabled bool     // no firewall at all: only for machines without iptables
}

// DefaultDeny lists the non-public IPv4 ranges (RFC 6890 and friends).
var DefaultDeny = []string{
	"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
	"172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15",
	"198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
}

// EgressFromEnv returns the default policy overridden by
// OPENSANDBOX_SANDBOX_NETWORK, OPENSANDBOX_SANDBOX_SUBNET,
// OPENSANDBOX_EGRESS_ALLOW (comma-separated CIDRs) and
// OPENSANDBOX_EGRESS_FIREWALL=off.
func EgressFromEnv() (EgressPolicy, error) {
	p := EgressPolicy{Network: "opensandbox", Subnet: "10.231.0.0/16", Deny: DefaultDeny}
	if v := os.Getenv("OPENSANDBOX_SANDBOX_NETWORK"); v != "" {
		p.Network = v
	}
	if v := os.Getenv("OPENSANDBOX_SANDBOX_SUBNET"); v != "" {
		p.Subnet = v
	}
	for _, v := range strings.Split(os.Getenv("OPENSANDBOX_EGRESS_ALLOW"), ",") {
		if v = strings.TrimSpace(v); v != "" {
			p.Allow = append(p.Allow, v)
		}
	}
	switch os.Getenv("OPENSANDBOX_EGRESS_FIREWALL") {
	case "", "on":
	case "off":
		p.Disabled = true
	default:
		return p, errors.New("OPENSANDBOX_EGRESS_FIREWALL must be on or off")
	}
	return p, p.Validate()
}

// Validate checks the CIDRs and the network name.
func (p EgressPolicy) Validate() error {
	if p.Network == "" || strings.ContainsAny(p.Network, " /") {
		return fmt.Errorf("sandbox network name %q is not valid", p.Network)
	}
	if _, n, err := net.ParseCIDR(p.Subnet); err != nil || n.IP.To4() == nil {
		return fmt.Errorf("sandbox subnet %q is not an IPv4 CIDR", p.Subnet)
	}
	for _, c := range append(append([]string{}, p.Deny...), p.Allow...) {
		if _, _, err := net.ParseCIDR(c); err != nil {
			return fmt.Errorf("egress rule %q is not a CIDR", c)
		}
	}
	return nil
}

// chain names are per network, so two networks can have two policies.
func (p EgressPolicy) chains() (forward, host string) {
	suffix := strings.ToUpper(p.Network)
	if len(suffix) > 16 {
		suffix = suffix[:16]
	}
	return "OSB-FWD-" + suffix, "OSB-HOST-" + suffix
}

// ensureNetwork creates the sandbox network if it is missing and installs
// the firewall. The rules are rebuilt from scratch in their own chains, so
// running it again (every worker start) converges to the policy.
func (p *Podman) ensureNetwork(ctx context.Context, pol EgressPolicy) error {
	c, cancel := p.with(ctx)
	defer cancel()
	exists, err := network.Exists(c, pol.Network, nil)
	if err != nil {
		return fmt.Errorf("look up network %s: %w", pol.Network, err)
	}
	_, subnet, _ := net.ParseCIDR(pol.Subnet)
	gateway := make(net.IP, len(subnet.IP.To4()))
	copy(gateway, subnet.IP.To4())
	gateway[3]++
	if !exists {
		ipnet, err := nettypes.ParseCIDR(pol.Subnet)
		if err != nil {
			return err
		}
		_, err = network.Create(c, &nettypes.Network{
			Name:       pol.Network,
			Driver:     "bridge",
			Subnets:    []nettypes.Subnet{{Subnet: ipnet, Gateway: gateway}},
			DNSEnabled: true, // aardvark-dns on the gateway: sandboxes need only the host's port 53
			Labels:     map[string]string{"opensandbox.network": "sandboxes"},
		})
		if err != nil {
			return fmt.Errorf("create network %s: %w", pol.Network, err)
		}
	}
	if pol.Disabled {
		return nil
	}
	return applyFirewall(ctx, pol, gateway.String())
}

// applyFirewall installs two chains: one for traffic the host forwards from
// the sandboxes (including sandbox to sandbox, which br_netfilter sends
// through FORWARD), one for traffic to the host itself.
func applyFirewall(ctx context.Context, pol EgressPolicy, gateway string) error {
	fwd, host := pol.chains()
	var rules [][]string
	for _, chain := range []string{fwd, host} {
		rules = append(rules, []string{"-N", chain}, []string{"-F", chain},
			[]string{"-A", chain, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "RETURN"})
		for _, cidr := range pol.Allow {
			rules = append(rules, []string{"-A", chain, "-d", cidr, "-j", "RETURN"})
		}
	}
	for _, cidr := range pol.Deny {
		rules = append(rules, []string{"-A", fwd, "-d", cidr, "-j", "REJECT", "--reject-with", "icmp-net-prohibited"})
	}
	for _, proto := range []string{"udp", "tcp"} {
		rules = append(rules, []string{"-A", host, "-d", gateway, "-p", proto, "--dport", "53", "-j", "RETURN"})
	}
	rules = append(rules, []string{"-A", host, "-j", "REJECT", "--reject-with", "icmp-port-unreachable"})
	for _, r := range rules {
		out, err := iptables(ctx, r...)
		if err != nil && !(r[0] == "-N" && strings.Contains(out, "exists")) {
			return fmt.Errorf("iptables %s: %w: %s", strings.Join(r, " "), err, out)
		}
	}
	// Jump first, before the rules Podman's network stack adds.
	for _, j := range [][]string{{"FORWARD", "-s", pol.Subnet, "-j", fwd}, {"INPUT", "-s", pol.Subnet, "-j", host}} {
		if _, err := iptables(ctx, append([]string{"-C"}, j...)...); err == nil {
			continue
		}
		if out, err := iptables(ctx, append([]string{"-I", j[0], "1"}, j[1:]...)...); err != nil {
			return fmt.Errorf("iptables insert jump to %s: %w: %s", j[len(j)-1], err, out)
		}
	}
	return nil
}

// RemoveFirewall deletes a policy's jumps and chains (tests, decommissioning).
func RemoveFirewall(ctx context.Context, pol EgressPolicy) {
	fwd, host := pol.chains()
	iptables(ctx, "-D", "FORWARD", "-s", pol.Subnet, "-j", fwd)
	iptables(ctx, "-D", "INPUT", "-s", pol.Subnet, "-j", host)
	for _, chain := range []string{fwd, host} {
		iptables(ctx, "-F", chain)
		iptables(ctx, "-X", chain)
	}
}

func iptables(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "iptables", append([]string{"-w", "10"}, args...)...).CombinedOutput()
	return string(out), err
}
