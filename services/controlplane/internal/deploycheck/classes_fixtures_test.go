package deploycheck

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// fixtureJob is a minimal job on node class class with one task.
func fixtureJob(t *testing.T, class, task string) *nomadJob {
	t.Helper()
	src := `variable "region" {
  type = string
}
variable "release_bucket" {
  type = string
}
variable "image" {
  type    = string
  default = "docker.io/prom/prometheus:v3.5.0"
}
job "fixture" {
  constraint {
    attribute = "${node.class}"
    value     = "` + class + `"
  }
  group "g" {
    task "t" {
` + task + `
    }
  }
}`
	f, diags := parseHCL("fixture.nomad.hcl", []byte(src))
	if diags.HasErrors() {
		t.Fatalf("%s\n%s", diags, src)
	}
	j, err := newJob(f)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// TestDeployChecksCatchEachMistake feeds each check a fixture with the
// mistake it exists for (and, where it helps, the corrected form).
func TestDeployChecksCatchEachMistake(t *testing.T) {
	cp := clientPolicy{
		Options: map[string]map[string]string{
			"worker":  {"user.denylist": "Administrator", "user.checked_drivers": "exec,java,qemu"},
			"control": {"user.denylist": "root,Administrator", "user.checked_drivers": "exec,java,qemu"},
		},
		AllowCaps: map[string][]string{"exec": {"chown", "net_admin"}, "podman": {"chown", "net_admin"}},
	}
	c := nomadContext{maxKillTimeout: time.Minute, fileBase: t.TempDir()}
	required := map[string]bool{"opensandbox/shared": true}
	artifact := func(src string) string {
		return `driver = "exec"
      artifact {
        source = "` + src + `"
        options {
          checksum = "sha256:00"
        }
      }`
	}
	cases := []struct {
		name  string
		check func(*nomadJob) []string
		job   *nomadJob
		want  string // "" : no problem expected
	}{
		{"artifact: path-style URL with a region: go-getter takes the bucket to be s3",
			func(j *nomadJob) []string { return checkArtifacts(t, j) },
			fixtureJob(t, "worker", artifact("s3::https://s3.${var.region}.amazonaws.com/${var.release_bucket}/releases/x.tar.gz")),
			`as bucket "s3"`},
		{"artifact: one bucket shared by the regions",
			func(j *nomadJob) []string { return checkArtifacts(t, j) },
			fixtureJob(t, "worker", artifact("s3::https://example-opensandbox-releases.s3.us-east-1.amazonaws.com/releases/x.tar.gz")),
			`as bucket "example-opensandbox-releases" in "us-east-1"`},
		{"artifact: virtual-hosted in the job's region",
			func(j *nomadJob) []string { return checkArtifacts(t, j) },
			fixtureJob(t, "worker", artifact("s3::https://${var.release_bucket}.s3.${var.region}.amazonaws.com/releases/x.tar.gz")),
			""},
		{"artifact: no checksum",
			func(j *nomadJob) []string { return checkArtifacts(t, j) },
			fixtureJob(t, "worker", "driver = \"exec\"\nartifact {\nsource = \"https://example.com/x.tar.gz\"\n}"),
			"no checksum option"},
		{"caps: a capability the exec plugin does not allow",
			func(j *nomadJob) []string { return checkCapsAndUsers(j, cp) },
			fixtureJob(t, "worker", "driver = \"exec\"\nconfig {\ncommand = \"x\"\ncap_add = [\"net_admin\", \"sys_admin\"]\n}"),
			"adds capability sys_admin"},
		{"caps: the podman driver's reviewed list",
			func(j *nomadJob) []string { return checkCapsAndUsers(j, cp) },
			fixtureJob(t, "worker", "driver = \"podman\"\nconfig {\nimage = \"x\"\ncap_add = [\"NET_ADMIN\"]\n}"),
			""},
		{"users: root where the clients deny it",
			func(j *nomadJob) []string { return checkCapsAndUsers(j, cp) },
			fixtureJob(t, "control", "driver = \"exec\"\nuser = \"root\"\nconfig {\ncommand = \"x\"\n}"),
			"runs as root, which the control clients deny for exec"},
		{"users: root on workers, whose clients allow it",
			func(j *nomadJob) []string { return checkCapsAndUsers(j, cp) },
			fixtureJob(t, "worker", "driver = \"exec\"\nuser = \"root\"\nconfig {\ncommand = \"x\"\n}"),
			""},
		{"nomadVar: an optional path read unguarded",
			func(j *nomadJob) []string { return checkTemplateVars(j, c, required) },
			fixtureJob(t, "control", "driver = \"exec\"\ntemplate {\ndestination = \"secrets/x.env\"\nenv = true\ndata = <<-EOT\n{{ with nomadVar \"opensandbox/workos\" }}A={{ .a }}{{ end }}\nEOT\n}"),
			`nomadVar "opensandbox/workos" is optional`},
		{"nomadVar: guarded by nomadVarExists",
			func(j *nomadJob) []string { return checkTemplateVars(j, c, required) },
			fixtureJob(t, "control", "driver = \"exec\"\ntemplate {\ndestination = \"secrets/x.env\"\nenv = true\ndata = <<-EOT\n{{ if nomadVarExists \"opensandbox/workos\" }}{{ with nomadVar \"opensandbox/workos\" }}A={{ .a }}{{ end }}{{ end }}\nEOT\n}"),
			""},
		{"owner: a 0440 root file for a nobody image",
			func(j *nomadJob) []string { return checkTemplateOwners(t, j) },
			fixtureJob(t, "control", "driver = \"podman\"\nconfig {\nimage = var.image\n}\ntemplate {\ndestination = \"secrets/token\"\nperms = \"0440\"\ndata = \"x\"\n}"),
			"owned by uid 0, but the task runs as 65534"},
		{"owner: the image's user owns it",
			func(j *nomadJob) []string { return checkTemplateOwners(t, j) },
			fixtureJob(t, "control", "driver = \"podman\"\nconfig {\nimage = var.image\n}\ntemplate {\ndestination = \"secrets/token\"\nperms = \"0400\"\nuid = 65534\ngid = 65534\ndata = \"x\"\n}"),
			""},
		{"owner: an image nobody told deploycheck about",
			func(j *nomadJob) []string { return checkTemplateOwners(t, j) },
			fixtureJob(t, "control", "driver = \"podman\"\nconfig {\nimage = \"docker.io/someone/else:1\"\n}\ntemplate {\ndestination = \"secrets/token\"\nperms = \"0400\"\ndata = \"x\"\n}"),
			"is not in deploycheck's imageUsers"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			problems := tc.check(tc.job)
			if tc.want == "" {
				if len(problems) > 0 {
					t.Errorf("unexpected problems %q", problems)
				}
				return
			}
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tc.want) }) {
				t.Errorf("problems %q do not mention %q", problems, tc.want)
			}
		})
	}

	// TLS: each required setting, removed from the real file, is reported.
	for _, r := range tlsRequirements {
		text := string(read(t, path(t, r.file)))
		for _, w := range r.want {
			loc := w.FindStringIndex(text)
			if loc == nil {
				continue // TestDeploymentAvoidsEachClassOfMistake reports it
			}
			broken := text[:loc[0]] + "# removed" + text[loc[1]:]
			if problems := checkTLS(r.file, broken, r.want); len(problems) == 0 {
				t.Errorf("%s without %s passes the TLS check", r.file, w)
			}
		}
	}
}
