package runtime

import (
	"encoding/binary"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestEgressPolicyValidate(t *testing.T) {
	ok := EgressPolicy{Network: "opensandbox", Subnet: "10.231.0.0/16", Deny: DefaultDeny, Allow: []string{"10.0.0.5/32"}}
	for name, c := range map[string]struct {
		edit func(*EgressPolicy)
		want string // "" = valid
	}{
		"default":              {func(*EgressPolicy) {}, ""},
		"network with a space": {func(p *EgressPolicy) { p.Network = "a b" }, "network name"},
		"network with a quote": {func(p *EgressPolicy) { p.Network = `a"; flush ruleset; "` }, "network name"},
		"IPv6 subnet":          {func(p *EgressPolicy) { p.Subnet = "fd00::/64" }, "not an IPv4 CIDR"},
		"IPv6 allow":           {func(p *EgressPolicy) { p.Allow = []string{"::1/128"} }, "not an IPv4 CIDR"},
		"not a CIDR":           {func(p *EgressPolicy) { p.Deny = []string{"10.0.0.1"} }, "not an IPv4 CIDR"},
	} {
		t.Run(name, func(t *testing.T) {
			p := ok
			c.edit(&p)
			err := p.Validate()
			if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
				t.Fatalf("Validate() = %v, want %q", err, c.want)
			}
		})
	}
}

// The ruleset names what the policy says, normalised, and nothing else.
func TestRulesetRendersThePolicy(t *testing.T) {
	p := EgressPolicy{Network: "osbnet", Subnet: "10.9.0.0/24", Deny: []string{"10.0.0.7/8"}, Allow: []string{"10.1.2.3/32"}}
	rs := p.ruleset("podman7")
	for _, want := range []string{
		"table inet osb-osbnet {", "table bridge osb-osbnet {", "delete table inet osb-osbnet",
		"priority filter - 10", `iifname "podman7" jump from_sandbox`, "ip saddr 10.9.0.0/24 jump to_host",
		"ip daddr 10.1.2.3/32 accept", "ip daddr 10.0.0.0/8 reject", "ip daddr 10.9.0.1 udp dport 53 accept",
		"ip daddr 10.9.0.0/24 drop",
	} {
		if !strings.Contains(rs, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, rs)
		}
	}
	// Sandbox to sandbox is refused before any allow.
	if strings.Index(rs, "ip daddr 10.9.0.0/24 reject") > strings.Index(rs, "ip daddr 10.1.2.3/32 accept") {
		t.Errorf("an allowed CIDR comes before the sandbox subnet's refusal:\n%s", rs)
	}
}

func nlmsg(typ uint16, payload []byte) []byte {
	b := make([]byte, unix.NLMSG_HDRLEN+len(payload))
	binary.NativeEndian.PutUint32(b[0:], uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:], typ)
	copy(b[unix.NLMSG_HDRLEN:], payload)
	return b
}

func TestParseGeneration(t *testing.T) {
	attr := make([]byte, 8)
	binary.NativeEndian.PutUint16(attr[0:], 8)
	binary.NativeEndian.PutUint16(attr[2:], unix.NFTA_GEN_ID)
	binary.BigEndian.PutUint32(attr[4:], 4242)
	gen, err := parseGeneration(nlmsg(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWGEN, append(make([]byte, 4), attr...)))
	if err != nil || gen != 4242 {
		t.Fatalf("parseGeneration = %d, %v; want 4242", gen, err)
	}
	errno := make([]byte, 4)
	e := -int32(unix.EPERM)
	binary.NativeEndian.PutUint32(errno, uint32(e))
	if _, err := parseGeneration(nlmsg(unix.NLMSG_ERROR, errno)); err == nil || !strings.Contains(err.Error(), "not permitted") {
		t.Errorf("an EPERM answer gave %v", err)
	}
	if _, err := parseGeneration([]byte{1, 2, 3}); err == nil {
		t.Error("garbage gave no error")
	}
}

// The kernel's generation moves on a commit and stays otherwise, which is
// what lets the firewall check skip listing its tables.
func TestNftGenerationMovesOnCommit(t *testing.T) {
	g1, err := nftGeneration()
	if err != nil {
		t.Fatal(err)
	}
	table := "osbt-gen-" + strings.ReplaceAll(t.Name(), "/", "-")
	if out, err := exec.Command("nft", "add", "table", "inet", table).CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	defer exec.Command("nft", "delete", "table", "inet", table).Run()
	g2, err := nftGeneration()
	if err != nil {
		t.Fatal(err)
	}
	if g2 == g1 {
		t.Fatalf("generation %d did not move on a commit", g1)
	}
}
