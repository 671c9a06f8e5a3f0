package deploycheck

// Checks for the classes of mistake that keep a region from coming up on
// its first apply (issue "a region that comes up on the first terraform
// apply"): artifact URLs go-getter reads differently than meant,
// capabilities and users the Nomad clients refuse, templates that block on
// an optional variable or render files the task's user cannot read, and
// TLS settings missing from an agent or a job. Each check has a failing
// fixture in TestDeployChecksCatchEachMistake.

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	getter "github.com/hashicorp/go-getter"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// clientPolicy is what the Nomad clients of the deployment allow, from
// ansible/group_vars/all.yml (which the agent template renders).
type clientPolicy struct {
	Options   map[string]map[string]string `yaml:"nomad_client_options"` // node class -> option -> value
	AllowCaps map[string][]string          `yaml:"nomad_allow_caps"`     // driver -> caps
}

func loadClientPolicy(t *testing.T) clientPolicy {
	var cp clientPolicy
	loadYAML(t, path(t, "ansible", "group_vars", "all.yml"), &cp)
	return cp
}

// jobSample are the values the artifact check gives the jobs' variables:
// a bucket named like the Terraform one, in the job's region.
var jobSample = map[string]cty.Value{
	"region":          cty.StringVal("eu-west-1"),
	"release_bucket":  cty.StringVal("osb-euw1-releases-123456789012"),
	"release_version": cty.StringVal("v0.1.0"),
	"release_sha256":  cty.StringVal(strings.Repeat("ab", 32)),
}

// recordingTransport answers every request with 404 and remembers where it
// was sent: the host and path the S3 client really addressed.
type recordingTransport struct {
	mu   sync.Mutex
	urls []*url.URL
}

func (r *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.urls = append(r.urls, req.URL)
	r.mu.Unlock()
	return &http.Response{StatusCode: http.StatusNotFound, Header: http.Header{"Content-Type": {"application/xml"}},
		Body: io.NopCloser(strings.NewReader(`<Error><Code>NoSuchKey</Code><Message>recorded</Message></Error>`)), Request: req}, nil
}

var getterMu sync.Mutex // http.DefaultTransport and the AWS environment are process-wide

// s3Target runs go-getter's own S3 getter (the one Nomad's artifact block
// uses) on src with a transport that records the request, and returns the
// bucket and region it really addressed: S3 virtual-hosted requests go to
// <bucket>.s3.<region>.amazonaws.com, path-style ones to
// s3.<region>.amazonaws.com/<bucket>.
func s3Target(t *testing.T, src string) (bucket, region string, err error) {
	getterMu.Lock()
	defer getterMu.Unlock()
	rec := &recordingTransport{}
	saved := http.DefaultTransport
	http.DefaultTransport = rec
	defer func() { http.DefaultTransport = saved }()
	for k, v := range map[string]string{"AWS_ACCESS_KEY_ID": "AKIDDEPLOYCHECK", "AWS_SECRET_ACCESS_KEY": "deploycheck", "AWS_SESSION_TOKEN": "",
		"AWS_PROFILE": "", "AWS_CONFIG_FILE": os.DevNull, "AWS_SHARED_CREDENTIALS_FILE": os.DevNull, "AWS_EC2_METADATA_DISABLED": "true"} {
		t.Setenv(k, v)
	}
	if !strings.HasPrefix(src, "s3::") {
		return "", "", fmt.Errorf("not an s3:: source")
	}
	// What Nomad's artifact block does: a go-getter client in "any" mode
	// (detectors, the forced s3 getter, ClientMode, then the download).
	gc := &getter.Client{Ctx: t.Context(), Src: src, Dst: filepath.Join(t.TempDir(), "artifact"), Mode: getter.ClientModeAny, Getters: getter.Getters}
	gerr := gc.Get()
	if len(rec.urls) == 0 {
		return "", "", fmt.Errorf("go-getter sent no request: %v", gerr)
	}
	host, p := rec.urls[0].Host, strings.TrimPrefix(rec.urls[0].Path, "/")
	// us-east-1 is S3's global endpoint: no region in the host name.
	host = strings.Replace(host, ".s3.amazonaws.com", ".s3.us-east-1.amazonaws.com", 1)
	if host == "s3.amazonaws.com" {
		host = "s3.us-east-1.amazonaws.com"
	}
	if m := regexp.MustCompile(`^(.+)\.s3[.-]([a-z0-9-]+)\.amazonaws\.com$`).FindStringSubmatch(host); m != nil {
		return m[1], m[2], nil
	}
	if m := regexp.MustCompile(`^s3[.-]([a-z0-9-]+)\.amazonaws\.com$`).FindStringSubmatch(host); m != nil {
		b, _, _ := strings.Cut(p, "/")
		return b, m[1], nil
	}
	return "", "", fmt.Errorf("request went to %s", rec.urls[0])
}

// checkArtifacts evaluates every artifact source of a job with sample
// variables and checks that go-getter fetches from the release bucket in
// the job's region, with a checksum.
func checkArtifacts(t *testing.T, j *nomadJob) []string {
	var problems []string
	ctx := &hcl.EvalContext{Variables: map[string]cty.Value{"var": cty.ObjectVal(jobSample)}}
	for _, g := range j.groups() {
		for _, task := range blocks(g.Body, "task") {
			for _, a := range blocks(task.Body, "artifact") {
				at := fmt.Sprintf("job %s task %s artifact", j.name, task.Labels[0])
				attr, ok := a.Body.Attributes["source"]
				if !ok {
					problems = append(problems, at+": no source")
					continue
				}
				v, diags := attr.Expr.Value(ctx)
				if diags.HasErrors() {
					problems = append(problems, fmt.Sprintf("%s: %s", at, diags.Error()))
					continue
				}
				src := v.AsString()
				hasSum := false
				for _, o := range blocks(a.Body, "options") {
					_, hasSum = o.Body.Attributes["checksum"]
				}
				if !hasSum {
					problems = append(problems, at+": no checksum option: the download is not pinned")
				}
				if !strings.HasPrefix(src, "s3::") {
					continue
				}
				bucket, region, err := s3Target(t, src)
				switch {
				case err != nil:
					problems = append(problems, fmt.Sprintf("%s: go-getter cannot use %s: %v", at, src, err))
				case bucket != jobSample["release_bucket"].AsString() || region != jobSample["region"].AsString():
					problems = append(problems, fmt.Sprintf("%s: go-getter reads %s as bucket %q in %q, not the release bucket %q in the job's region %q",
						at, src, bucket, region, jobSample["release_bucket"].AsString(), jobSample["region"].AsString()))
				}
			}
		}
	}
	return problems
}

// taskDriverConfig returns a task's driver and its config block.
func taskDriverConfig(task *hclsyntax.Block) (string, *hclsyntax.Body) {
	driver, _ := literal(task.Body, "driver")
	for _, c := range blocks(task.Body, "config") {
		return driver, c.Body
	}
	return driver, &hclsyntax.Body{}
}

// stringList returns a literal list of strings.
func stringList(body *hclsyntax.Body, name string) []string {
	a, ok := body.Attributes[name]
	if !ok {
		return nil
	}
	v, diags := a.Expr.Value(nil)
	if diags.HasErrors() || !v.Type().IsTupleType() && !v.Type().IsListType() {
		return nil
	}
	var out []string
	for _, e := range v.AsValueSlice() {
		if e.Type() == cty.String {
			out = append(out, e.AsString())
		}
	}
	return out
}

// checkCapsAndUsers checks every task against its clients: each added
// capability is in the driver's allow list, and a task user is not one the
// client refuses for that driver.
func checkCapsAndUsers(j *nomadJob, cp clientPolicy) []string {
	var problems []string
	opts := cp.Options[j.nodeClass]
	for _, g := range j.groups() {
		for _, task := range blocks(g.Body, "task") {
			at := fmt.Sprintf("job %s task %s", j.name, task.Labels[0])
			driver, cfg := taskDriverConfig(task)
			allowed, known := cp.AllowCaps[driver]
			for _, c := range stringList(cfg, "cap_add") {
				c = strings.ToLower(strings.TrimPrefix(strings.ToLower(c), "cap_"))
				if !known {
					problems = append(problems, fmt.Sprintf("%s: adds %s but driver %s has no allow list in nomad_allow_caps", at, c, driver))
				} else if !slices.Contains(allowed, c) {
					problems = append(problems, fmt.Sprintf("%s: adds capability %s, which the %s clients' allow_caps refuse", at, c, driver))
				}
			}
			user, ok := literal(task.Body, "user")
			if !ok {
				continue
			}
			if opts == nil {
				problems = append(problems, fmt.Sprintf("%s: node class %q has no nomad_client_options", at, j.nodeClass))
				continue
			}
			checked := strings.Split(cmpOr(opts["user.checked_drivers"], "exec,qemu,java"), ",")
			if !slices.Contains(checked, driver) {
				continue
			}
			if deny := strings.Split(cmpOr(opts["user.denylist"], "root,Administrator"), ","); slices.Contains(deny, user) {
				problems = append(problems, fmt.Sprintf("%s: runs as %s, which the %s clients deny for %s (user.denylist)", at, user, j.nodeClass, driver))
			}
			if allow := opts["user.allowlist"]; allow != "" && !slices.Contains(strings.Split(allow, ","), user) {
				problems = append(problems, fmt.Sprintf("%s: runs as %s, not in the %s clients' user.allowlist", at, user, j.nodeClass))
			}
		}
	}
	return problems
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

var (
	nomadVarCall    = regexp.MustCompile(`nomadVar\s+"([^"]+)"`)
	nomadVarExists  = regexp.MustCompile(`nomadVarExists\s+"([^"]+)"`)
	bootstrapWrites = regexp.MustCompile(`(?m)^\s*(?:put_var|var_merge)\s+(\S+)`)
)

// operatorWrites are the Nomad variables written outside the bootstrap
// script, each by a documented required step.
var operatorWrites = map[string]string{
	"opensandbox/database":                "docs/deploy.md: the PostgreSQL URL",
	"nomad/jobs/nats":                     "opensandbox-server admin nats-credentials",
	"nomad/jobs/opensandbox-controlplane": "opensandbox-server admin nats-credentials",
	"nomad/jobs/opensandbox-worker":       "opensandbox-server admin nats-credentials",
	"nomad/jobs/opensandbox-syncer":       "opensandbox-server admin nats-credentials",
}

// requiredVars are the Nomad variables a region always has: written by
// scripts/bootstrap-region.sh or by a required documented step.
func requiredVars(t *testing.T) map[string]bool {
	out := map[string]bool{}
	for _, m := range bootstrapWrites.FindAllStringSubmatch(string(read(t, path(t, "scripts", "bootstrap-region.sh"))), -1) {
		out[m[1]] = true
	}
	for p := range operatorWrites {
		out[p] = true
	}
	return out
}

// checkTemplateVars: a template that reads a Nomad variable nothing
// guarantees must guard it with nomadVarExists, or it blocks forever (and
// with it the task) where the variable was never written.
func checkTemplateVars(j *nomadJob, c nomadContext, required map[string]bool) []string {
	var problems []string
	for _, g := range j.groups() {
		for _, task := range blocks(g.Body, "task") {
			for _, tb := range blocks(task.Body, "template") {
				text, _ := c.templateText(j.file, tb)
				guarded := map[string]bool{}
				for _, m := range nomadVarExists.FindAllStringSubmatch(text, -1) {
					guarded[m[1]] = true
				}
				for _, m := range nomadVarCall.FindAllStringSubmatch(text, -1) {
					if !required[m[1]] && !guarded[m[1]] {
						dest, _ := literal(tb.Body, "destination")
						problems = append(problems, fmt.Sprintf("job %s task %s template %s: nomadVar %q is optional (nothing writes it for every region) and not guarded by nomadVarExists: the task would never start without it",
							j.name, task.Labels[0], dest, m[1]))
					}
				}
			}
		}
	}
	return problems
}

// imageUsers are the users the deployment's images run as. Our own images
// (make release) run as the release tool's imageUser.
var imageUsers = map[string]string{
	"docker.io/prom/prometheus":         "65534",
	"docker.io/prom/alertmanager":       "65534",
	"docker.io/grafana/grafana-oss":     "472",
	"docker.io/library/nats":            "0",
	"gcr.io/distroless/static-debian12": "65532",
}

var releaseImageUser = regexp.MustCompile(`(?m)^const imageUser = "(\d+)"`)

// taskImageUser returns the uid a podman task's process runs as.
func taskImageUser(t *testing.T, j *nomadJob, task *hclsyntax.Block) (string, error) {
	if u, ok := literal(task.Body, "user"); ok {
		return u, nil
	}
	_, cfg := taskDriverConfig(task)
	a, ok := cfg.Attributes["image"]
	if !ok {
		return "", fmt.Errorf("no image")
	}
	image, ok := exprLiteral(a.Expr)
	if !ok {
		if tr, isVar := a.Expr.(*hclsyntax.ScopeTraversalExpr); isVar && tr.Traversal.RootName() == "var" {
			name := tr.Traversal[1].(hcl.TraverseAttr).Name
			for _, vb := range blocks(j.file.body, "variable") {
				if vb.Labels[0] == name {
					image, ok = literal(vb.Body, "default")
				}
			}
			if !ok && strings.HasPrefix(j.name, "opensandbox-") {
				// Our images, pinned by digest at deploy time.
				m := releaseImageUser.FindSubmatch(read(t, path(t, "scripts", "release", "build.go")))
				if m == nil {
					return "", fmt.Errorf("scripts/release/build.go: imageUser not found")
				}
				return string(m[1]), nil
			}
		}
	}
	repo := image
	if i := strings.LastIndexAny(repo, ":@"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	if u, ok := imageUsers[repo]; ok {
		return u, nil
	}
	return "", fmt.Errorf("image %q is not in deploycheck's imageUsers: add the user it runs as", image)
}

// checkTemplateOwners: a file template the task reads itself, with a mode
// that shuts out others, must belong to the user the task runs as (Nomad
// renders files as root unless told otherwise).
func checkTemplateOwners(t *testing.T, j *nomadJob) []string {
	var problems []string
	for _, g := range j.groups() {
		for _, task := range blocks(g.Body, "task") {
			driver, _ := literal(task.Body, "driver")
			for _, tb := range blocks(task.Body, "template") {
				if env, _ := literal(tb.Body, "env"); env == "true" {
					continue // read by Nomad into the environment
				}
				perms, ok := literal(tb.Body, "perms")
				if !ok || strings.HasSuffix(perms, "4") || strings.HasSuffix(perms, "6") || strings.HasSuffix(perms, "5") || strings.HasSuffix(perms, "7") {
					continue // others may read it
				}
				dest, _ := literal(tb.Body, "destination")
				at := fmt.Sprintf("job %s task %s template %s (perms %s)", j.name, task.Labels[0], dest, perms)
				var want string
				switch driver {
				case "podman", "docker":
					u, err := taskImageUser(t, j, task)
					if err != nil {
						problems = append(problems, fmt.Sprintf("%s: %v", at, err))
						continue
					}
					want = u
				default:
					want, _ = literal(task.Body, "user")
					if want == "" || want == "root" {
						want = "0"
					}
				}
				uid, ok := literal(tb.Body, "uid")
				if !ok {
					uid = "0" // Nomad renders as root
				}
				if uid != want {
					problems = append(problems, fmt.Sprintf("%s: owned by uid %s, but the task runs as %s and could not read it", at, uid, want))
				}
			}
		}
	}
	return problems
}

// tlsRequirements are the settings without which traffic that crosses the
// network would go in clear or unauthenticated.
var tlsRequirements = []struct {
	file string
	want []*regexp.Regexp
}{
	{"ansible/roles/consul/templates/consul.hcl.j2", []*regexp.Regexp{
		regexp.MustCompile(`(?m)^encrypt\s*=`), regexp.MustCompile(`encrypt_verify_incoming\s*=\s*true`), regexp.MustCompile(`encrypt_verify_outgoing\s*=\s*true`),
		regexp.MustCompile(`(?s)tls\s*\{.*verify_incoming\s*=\s*true.*verify_outgoing\s*=\s*true`), regexp.MustCompile(`verify_server_hostname\s*=\s*true`),
		regexp.MustCompile(`default_policy\s*=\s*"deny"`), regexp.MustCompile(`(?m)client_addr\s*=\s*"127\.0\.0\.1"`),
	}},
	{"ansible/roles/nomad/templates/nomad.hcl.j2", []*regexp.Regexp{
		regexp.MustCompile(`(?s)tls\s*\{[^}]*http\s*=\s*true`), regexp.MustCompile(`(?s)tls\s*\{[^}]*rpc\s*=\s*true`),
		regexp.MustCompile(`verify_server_hostname\s*=\s*true`), regexp.MustCompile(`(?m)^\s*encrypt\s*=`), regexp.MustCompile(`(?s)acl\s*\{\s*enabled\s*=\s*true`),
	}},
	{"nomad/opensandbox-worker.nomad.hcl", []*regexp.Regexp{
		regexp.MustCompile(`OPENSANDBOX_TLS_CERT\s*=`), regexp.MustCompile(`OPENSANDBOX_TLS_KEY\s*=`), regexp.MustCompile(`OPENSANDBOX_WORKER_URL=https://`),
		regexp.MustCompile(`OPENSANDBOX_GRPC_TLS_CERT\s*=`), regexp.MustCompile(`OPENSANDBOX_GRPC_TLS_KEY\s*=`), regexp.MustCompile(`OPENSANDBOX_GRPC_TLS_CA\s*=`),
	}},
	{"nomad/opensandbox-controlplane.nomad.hcl", []*regexp.Regexp{
		regexp.MustCompile(`OPENSANDBOX_GRPC_TLS_CERT\s*=`), regexp.MustCompile(`OPENSANDBOX_GRPC_TLS_KEY\s*=`),
	}},
}

func checkTLS(name string, text string, want []*regexp.Regexp) []string {
	var problems []string
	for _, w := range want {
		if !w.MatchString(text) {
			problems = append(problems, fmt.Sprintf("%s: TLS/ACL setting missing: %s", name, w))
		}
	}
	return problems
}

// TestDeploymentAvoidsEachClassOfMistake runs the checks on the real files.
func TestDeploymentAvoidsEachClassOfMistake(t *testing.T) {
	c := newNomadContext(t)
	cp := loadClientPolicy(t)
	required := requiredVars(t)
	var problems []string
	for _, j := range loadJobs(t) {
		problems = append(problems, checkArtifacts(t, j)...)
		problems = append(problems, checkCapsAndUsers(j, cp)...)
		problems = append(problems, checkTemplateVars(j, c, required)...)
		problems = append(problems, checkTemplateOwners(t, j)...)
	}
	for _, r := range tlsRequirements {
		problems = append(problems, checkTLS(r.file, string(read(t, path(t, r.file))), r.want)...)
	}
	for _, p := range problems {
		t.Error(p)
	}
	for _, want := range []string{"opensandbox/shared", "opensandbox/metrics", "opensandbox/grpc", "opensandbox/tls"} {
		if !required[want] {
			t.Errorf("scripts/bootstrap-region.sh does not write %s", want)
		}
	}
}
