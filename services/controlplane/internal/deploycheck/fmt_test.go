package deploycheck

import (
	"os/exec"
	"testing"
)

// TestFormatters runs the HashiCorp formatters in check mode where they are
// installed. A missing binary is logged, not skipped: it affects only its
// own subtest, and every other check above runs regardless.
func TestFormatters(t *testing.T) {
	for _, f := range []struct {
		bin  string
		args []string
		dir  string
	}{
		{"terraform", []string{"fmt", "-check", "-recursive", "-diff"}, "terraform"},
		{"nomad", []string{"fmt", "-check", "-recursive"}, "nomad"},
	} {
		t.Run(f.bin, func(t *testing.T) {
			bin, err := exec.LookPath(f.bin)
			if err != nil {
				t.Logf("%s is not installed here; `%s %v` not run (the HCL parse and lint checks above still ran)", f.bin, f.bin, f.args)
				return
			}
			cmd := exec.Command(bin, f.args...)
			cmd.Dir = path(t, f.dir)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Errorf("%s %v in %s: %v\n%s", f.bin, f.args, f.dir, err, out)
			}
		})
	}
}
