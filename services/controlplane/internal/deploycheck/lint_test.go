package deploycheck

import (
	"os/exec"
	"regexp"
	"testing"
)

// TestAnsibleLintProduction runs ansible-lint's production profile on the
// playbook. scripts/test-deps.sh installs Debian's ansible-lint for make
// test, so a missing binary is a failure, not a skip.
func TestAnsibleLintProduction(t *testing.T) {
	bin, err := exec.LookPath("ansible-lint")
	if err != nil {
		t.Fatal("ansible-lint is not installed (apt-get install ansible-lint; scripts/test-deps.sh does)")
	}
	cmd := exec.Command(bin, "--offline", "--profile", "production", "-q", "site.yml")
	cmd.Dir = path(t, "ansible")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("ansible-lint --profile production: %v\n%s", err, out)
	}
}

// TestBootstrapScriptParses: the region bootstrap script is at least valid
// bash (it runs against AWS, Consul and Nomad, none of which run here).
func TestBootstrapScriptParses(t *testing.T) {
	for _, s := range []string{"scripts/bootstrap-region.sh"} {
		if out, err := exec.Command("bash", "-n", path(t, s)).CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", s, err, out)
		}
	}
}

var mostRecentAMI = regexp.MustCompile(`(?s)data\s+"aws_ami"[^{]*\{[^}]*most_recent\s*=\s*true`)

// TestAMIIsPinned: no Terraform file picks "the newest" image, which would
// replace hosts on an apply after any upstream release.
func TestAMIIsPinned(t *testing.T) {
	for _, p := range files(t, "terraform", ".tf") {
		if mostRecentAMI.Match(read(t, p)) {
			t.Errorf("%s: data \"aws_ami\" with most_recent: pin ami_id instead", rel(t, p))
		}
	}
	if !mostRecentAMI.MatchString("data \"aws_ami\" \"debian\" {\n  most_recent = true\n}") {
		t.Error("the AMI check misses a most_recent lookup")
	}
}
