package runtime

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
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
	Deny     []string // destinations refused, IPv4 CIDRs
	Allow    []string // exceptions to Deny (and to the host rule), IPv4 CIDRs
	Disabled bool     // no firewall at all: only for machines without nftables
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

// networkName is what Podman accepts as a network name; the name also goes
// into the nftables ruleset, so nothing else may pass.
var networkName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)

// interfaceName is a Linux interface name (it goes into the ruleset too).
var interfaceName = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,15}$`)

// Validate checks the CIDRs and the network name.
func (p EgressPolicy) Validate() error {
	if !networkName.MatchString(p.Network) {
		return fmt.Errorf("sandbox network name %q is not valid (letters, digits, _ . -)", p.Network)
	}
	if _, err := ipv4CIDR(p.Subnet); err != nil {
		return fmt.Errorf("sandbox subnet: %w", err)
	}
	for _, c := range append(append([]string{}, p.Deny...), p.Allow...) {
		if _, err := ipv4CIDR(c); err != nil {
			return fmt.Errorf("egress rule: %w", err)
		}
	}
	return nil
}

// ipv4CIDR parses an IPv4 CIDR and returns it normalised (host bits cleared).
// Sandboxes have no IPv6, so IPv6 rules would only mislead.
func ipv4CIDR(s string) (string, error) {
	_, n, err := net.ParseCIDR(s)
	if err != nil || n.IP.To4() == nil {
		return "", fmt.Errorf("%q is not an IPv4 CIDR", s)
	}
	return n.String(), nil
}

// gateway is the first address of the subnet, where netavark puts the
// bridge and aardvark-dns.
func (p EgressPolicy) gateway() net.IP {
	_, subnet, _ := net.ParseCIDR(p.Subnet)
	gw := make(net.IP, 4)
	copy(gw, subnet.IP.To4())
	gw[3]++
	return gw
}

// ensureNetwork creates the sandbox network if it is missing and returns
// the name of its bridge interface.
func (p *Podman) ensureNetwork(ctx context.Context, pol EgressPolicy) (bridge string, err error) {
	c, cancel := p.with(ctx)
	defer cancel()
	exists, err := network.Exists(c, pol.Network, nil)
	if err != nil {
		return "", fmt.Errorf("look up network %s: %w", pol.Network, err)
	}
	if !exists {
		ipnet, err := nettypes.ParseCIDR(pol.Subnet)
		if err != nil {
			return "", err
		}
		_, err = network.Create(c, &nettypes.Network{
			Name:       pol.Network,
			Driver:     "bridge",
			Subnets:    []nettypes.Subnet{{Subnet: ipnet, Gateway: pol.gateway()}},
			DNSEnabled: true, // aardvark-dns on the gateway: sandboxes need only the host's port 53
			Labels:     map[string]string{"opensandbox.network": "sandboxes"},
		})
		if err != nil {
			return "", fmt.Errorf("create network %s: %w", pol.Network, err)
		}
	}
	// Inspect even after a create: a concurrent create by another worker
	// process may have won, and the firewall must match what exists.
	nets, err := network.Inspect(c, pol.Network, nil)
	if err != nil {
		return "", fmt.Errorf("inspect network %s: %w", pol.Network, err)
	}
	want, _ := ipv4CIDR(pol.Subnet)
	for _, s := range nets.Subnets {
		if s.Subnet.String() != want {
			return "", fmt.Errorf("network %s has subnet %s, but the egress policy is for %s", pol.Network, s.Subnet.String(), want)
		}
	}
	if !interfaceName.MatchString(nets.NetworkInterface) {
		return "", fmt.Errorf("network %s has no usable bridge interface (%q)", pol.Network, nets.NetworkInterface)
	}
	return nets.NetworkInterface, nil
}
