package runtime

import (
	"encoding/json"
	"testing"
)

func TestDiskModeFor(t *testing.T) {
	for _, tc := range []struct {
		driver, fs string
		skipHome   bool
		want       diskMode
	}{
		{"overlay", "xfs", false, diskStorageOpt},
		{"overlay", "xfs", true, diskStorageOpt},
		{"overlay", "extfs", true, diskLoop},
		{"overlay", "extfs", false, 0},
		{"btrfs", "btrfs", true, 0},
	} {
		got, err := diskModeFor(tc.driver, tc.fs, tc.skipHome)
		if got != tc.want || (tc.want == 0) != (err != nil) {
			t.Errorf("diskModeFor(%q, %q, %v) = %v, %v; want %v", tc.driver, tc.fs, tc.skipHome, got, err, tc.want)
		}
	}
}

func TestHostIDOfRoot(t *testing.T) {
	for _, tc := range []struct {
		m    []string
		want int
	}{{[]string{"0:1065536:65536"}, 1065536}, {[]string{"1:5:3", "0:7:1"}, 7}} {
		if got, err := hostIDOfRoot(tc.m); err != nil || got != tc.want {
			t.Errorf("hostIDOfRoot(%v) = %d, %v; want %d", tc.m, got, err, tc.want)
		}
	}
	if _, err := hostIDOfRoot([]string{"1:1000:10"}); err == nil {
		t.Error("a map without root gave no error")
	}
}

func TestUnescapeMountPath(t *testing.T) {
	for in, want := range map[string]string{`/a\040b`: "/a b", `/plain`: "/plain", `/x\134y`: `/x\y`} {
		if got := unescapeMountPath(in); got != want {
			t.Errorf("unescapeMountPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// The embedded profile is valid JSON with the rules docs/security.md lists.
func TestSeccompProfileDeniesTheListedCalls(t *testing.T) {
	var p struct {
		DefaultAction string `json:"defaultAction"`
		Syscalls      []struct {
			Names    []string `json:"names"`
			Action   string   `json:"action"`
			ErrnoRet int      `json:"errnoRet"`
			Args     []any    `json:"args"`
		} `json:"syscalls"`
	}
	if err := json.Unmarshal(SeccompProfile, &p); err != nil {
		t.Fatal(err)
	}
	denied := map[string]bool{}
	for _, s := range p.Syscalls {
		if s.Action != "SCMP_ACT_ERRNO" || len(s.Args) > 0 {
			continue
		}
		for _, n := range s.Names {
			denied[n] = true
		}
	}
	for _, n := range []string{"unshare", "setns", "clone3", "mount", "umount2", "keyctl", "add_key", "request_key",
		"bpf", "perf_event_open", "userfaultfd", "kexec_load", "kexec_file_load", "init_module", "finit_module",
		"delete_module", "ptrace", "open_tree", "fsopen", "io_uring_setup"} {
		if !denied[n] {
			t.Errorf("%s is not denied outright", n)
		}
	}
	if p.DefaultAction != "SCMP_ACT_ALLOW" {
		t.Errorf("default action %q", p.DefaultAction)
	}
}
