package deploycheck

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// nomadJob is one parsed job file.
type nomadJob struct {
	file      *hclFile
	block     *hclsyntax.Block
	name      string
	typ       string
	nodeClass string
}

func loadJobs(t *testing.T) []*nomadJob {
	t.Helper()
	var jobs []*nomadJob
	for _, p := range files(t, "nomad", ".nomad.hcl") {
		f := mustParseHCL(t, p)
		j, err := newJob(f)
		if err != nil {
			t.Errorf("%s: %v", rel(t, p), err)
			continue
		}
		jobs = append(jobs, j)
	}
	return jobs
}

func newJob(f *hclFile) (*nomadJob, error) {
	jb := blocks(f.body, "job")
	if len(jb) != 1 {
		return nil, fmt.Errorf("want exactly one job block, found %d", len(jb))
	}
	j := &nomadJob{file: f, block: jb[0], name: jb[0].Labels[0], typ: "service"}
	if typ, ok := literal(j.block.Body, "type"); ok {
		j.typ = typ
	}
	for _, c := range blocks(j.block.Body, "constraint") {
		if a, ok := c.Body.Attributes["attribute"]; ok && f.source(a.Expr.Range()) == `"${node.class}"` {
			j.nodeClass, _ = literal(c.Body, "value")
		}
	}
	return j, nil
}

func (j *nomadJob) groups() []*hclsyntax.Block { return blocks(j.block.Body, "group") }

// nomadContext is what the jobs are checked against.
type nomadContext struct {
	maxKillTimeout time.Duration
	hostVolumes    map[string]map[string]string // node class -> volume name -> host path
	envKnown       map[string]bool              // variables the Go code reads
	fileBase       string                       // directory file() paths are relative to
}

// requiredEnv are the variables each OpenSandbox job must set: the binaries
// refuse to start (or start wrong) without them.
var requiredEnv = map[string][]string{
	"opensandbox-worker": {"NATS_URL", "OPENSANDBOX_JWT_SECRET", "OPENSANDBOX_WORKER_SECRET", "OPENSANDBOX_METRICS_TOKEN", "OPENSANDBOX_HOST",
		"OPENSANDBOX_WORKER_ID", "OPENSANDBOX_WORKER_URL", "OPENSANDBOX_WORKER_GRPC_ADDR", "OPENSANDBOX_REGION",
		"OPENSANDBOX_DATA_DIR", "OPENSANDBOX_PODMAN_URI", "OPENSANDBOX_AGENT_BINARY"},
	"opensandbox-controlplane": {"OPENSANDBOX_MODE", "DATABASE_URL", "NATS_URL", "OPENSANDBOX_JWT_SECRET",
		"OPENSANDBOX_WORKER_SECRET", "OPENSANDBOX_METRICS_TOKEN", "OPENSANDBOX_HOST", "OPENSANDBOX_DEFAULT_REGION"},
	"opensandbox-syncer": {"DATABASE_URL", "NATS_URL", "OPENSANDBOX_HOST"},
}

var envLine = regexp.MustCompile(`(?m)^\s*([A-Z][A-Z0-9_]*)=`)

// templateText returns a template's data: the heredoc, or the file it reads.
func (c nomadContext) templateText(f *hclFile, tb *hclsyntax.Block) (string, error) {
	a, ok := tb.Body.Attributes["data"]
	if !ok {
		return "", nil
	}
	if call, ok := a.Expr.(*hclsyntax.FunctionCallExpr); ok && call.Name == "file" && len(call.Args) == 1 {
		p, _ := exprLiteral(call.Args[0])
		b, err := os.ReadFile(filepath.Join(c.fileBase, p))
		return string(b), err
	}
	return f.source(a.Expr.Range()), nil
}

// taskEnv returns the environment a task sets: its env block and the
// templates rendered with env = true.
func (c nomadContext) taskEnv(f *hclFile, task *hclsyntax.Block) (map[string]hcl.Range, []string) {
	env := map[string]hcl.Range{}
	var problems []string
	for _, eb := range blocks(task.Body, "env") {
		for k, a := range eb.Body.Attributes {
			env[k] = a.NameRange
		}
	}
	for _, tb := range blocks(task.Body, "template") {
		if v, _ := literal(tb.Body, "env"); v != "true" {
			continue
		}
		text, err := c.templateText(f, tb)
		if err != nil {
			problems = append(problems, err.Error())
		}
		for _, m := range envLine.FindAllStringSubmatch(text, -1) {
			env[m[1]] = tb.DefRange()
		}
	}
	return env, problems
}

// checkJob returns what is wrong with one job file.
func checkJob(j *nomadJob, c nomadContext) []string {
	var problems []string
	add := func(r hcl.Range, format string, args ...any) {
		problems = append(problems, fmt.Sprintf("%s:%d: job %s: ", filepath.Base(r.Filename), r.Start.Line, j.name)+fmt.Sprintf(format, args...))
	}
	ours := strings.HasPrefix(j.name, "opensandbox-")
	if j.nodeClass == "" {
		add(j.block.DefRange(), `no constraint on ${node.class}: the job could land on any host`)
	}
	jobUpdate := len(blocks(j.block.Body, "update")) > 0
	var services, healthChecks int
	env := map[string]hcl.Range{}
	if len(j.groups()) == 0 {
		add(j.block.DefRange(), "no group")
	}
	for _, g := range j.groups() {
		if len(blocks(g.Body, "restart")) == 0 {
			add(g.DefRange(), "group %s has no restart block", g.Labels[0])
		}
		if j.typ != "batch" && !jobUpdate && len(blocks(g.Body, "update")) == 0 {
			add(g.DefRange(), "group %s has no update block (job or group level)", g.Labels[0])
		}
		for _, v := range blocks(g.Body, "volume") {
			if typ, _ := literal(v.Body, "type"); typ != "host" {
				continue
			}
			src, _ := literal(v.Body, "source")
			if _, ok := c.hostVolumes[j.nodeClass][src]; !ok {
				add(v.DefRange(), "host volume %q is not configured on %q clients (ansible nomad_host_volumes)", src, j.nodeClass)
			}
		}
		svcs := blocks(g.Body, "service")
		for _, task := range blocks(g.Body, "task") {
			svcs = append(svcs, blocks(task.Body, "service")...)
			kt, ok := literal(task.Body, "kill_timeout")
			if !ok {
				add(task.DefRange(), "task %s has no literal kill_timeout", task.Labels[0])
			} else if d, err := time.ParseDuration(kt); err != nil || d <= 0 {
				add(task.DefRange(), "task %s: kill_timeout %q is not a positive duration", task.Labels[0], kt)
			} else if c.maxKillTimeout > 0 && d > c.maxKillTimeout {
				add(task.DefRange(), "task %s: kill_timeout %s exceeds the clients' max_kill_timeout %s", task.Labels[0], d, c.maxKillTimeout)
			}
			te, tp := c.taskEnv(j.file, task)
			problems = append(problems, tp...)
			for k, r := range te {
				env[k] = r
			}
		}
		for _, s := range svcs {
			services++
			checks := blocks(s.Body, "check")
			if len(checks) == 0 {
				add(s.DefRange(), "service has no check")
			}
			for _, ck := range checks {
				typ, _ := literal(ck.Body, "type")
				p, _ := literal(ck.Body, "path")
				if typ == "http" && p == "" {
					add(ck.DefRange(), "http check without a path")
				}
				if typ == "http" && (!ours || p == "/health") {
					healthChecks++
				}
			}
		}
	}
	if services == 0 {
		add(j.block.DefRange(), "no Consul service registration")
	}
	if healthChecks == 0 {
		want := "an HTTP health check"
		if ours {
			want = "an HTTP check on /health"
		}
		add(j.block.DefRange(), "no service has %s", want)
	}
	hclsyntax.VisitAll(j.file.body, func(n hclsyntax.Node) hcl.Diagnostics {
		if call, ok := n.(*hclsyntax.FunctionCallExpr); ok && call.Name == "file" && len(call.Args) == 1 {
			p, _ := exprLiteral(call.Args[0])
			if _, err := os.Stat(filepath.Join(c.fileBase, p)); err != nil {
				add(call.NameRange, "file(%q) does not exist relative to nomad/", p)
			}
		}
		return nil
	})
	if ours {
		for k, r := range env {
			if (strings.HasPrefix(k, "OPENSANDBOX_") || strings.HasSuffix(k, "_URL")) && !c.envKnown[k] {
				add(r, "sets %s, which no binary reads", k)
			}
		}
		for _, k := range requiredEnv[j.name] {
			if _, ok := env[k]; !ok {
				add(j.block.DefRange(), "does not set %s", k)
			}
		}
	}
	slices.Sort(problems)
	return problems
}

func newNomadContext(t *testing.T) nomadContext {
	gv := loadGroupVars(t)
	max, err := time.ParseDuration(gv.NomadMaxKillTimeout)
	if err != nil {
		t.Fatalf("ansible group_vars nomad_max_kill_timeout: %v", err)
	}
	c := nomadContext{maxKillTimeout: max, hostVolumes: map[string]map[string]string{}, envKnown: services(t).envVars(), fileBase: path(t, "nomad")}
	for role, vols := range gv.NomadHostVolumes {
		c.hostVolumes[role] = map[string]string{}
		for _, v := range vols {
			c.hostVolumes[role][v.Name] = v.Path
		}
	}
	return c
}

// TestNomadJobs checks every job file against the code and the host
// configuration.
func TestNomadJobs(t *testing.T) {
	c := newNomadContext(t)
	jobs := loadJobs(t)
	var names []string
	for _, j := range jobs {
		names = append(names, j.name)
		for _, p := range checkJob(j, c) {
			t.Error(p)
		}
	}
	for _, want := range []string{"opensandbox-worker", "opensandbox-controlplane", "opensandbox-syncer", "nats", "prometheus", "grafana"} {
		if !slices.Contains(names, want) {
			t.Errorf("no job %q under nomad/ (have %v)", want, names)
		}
	}
}

// shutdownBudgets say where each binary's graceful-shutdown budget lives in
// the code and how the job's kill_timeout must cover it. If the code moves,
// this test fails and whoever moved it re-checks the kill timeout.
var shutdownBudgets = []struct {
	job, task, file string
	pattern         *regexp.Regexp
	times           int           // sequential waits of that budget
	extra           time.Duration // further bounded waits after them
}{
	// gRPC graceful stop, then HTTP shutdown, each bounded by shutdownBudget,
	// then a 2s NATS flush.
	{"opensandbox-worker", "worker", "services/worker/app/app.go", regexp.MustCompile(`shutdownBudget = (\d+) \* time\.Second`), 2, 2 * time.Second},
	{"opensandbox-controlplane", "controlplane", "services/controlplane/internal/server/server.go", regexp.MustCompile(`ShutdownWithTimeout\((\d+) \* time\.Second\)`), 1, 0},
	{"opensandbox-syncer", "syncer", "services/syncer/main.go", regexp.MustCompile(`context\.WithTimeout\(context\.Background\(\), (\d+) ?\* ?time\.Second\)`), 1, 0},
}

// TestKillTimeoutsCoverShutdownBudgets compares each job's kill_timeout with
// the shutdown budget in the binary's code.
func TestKillTimeoutsCoverShutdownBudgets(t *testing.T) {
	jobs := map[string]*nomadJob{}
	for _, j := range loadJobs(t) {
		jobs[j.name] = j
	}
	for _, b := range shutdownBudgets {
		m := b.pattern.FindSubmatch(read(t, path(t, b.file)))
		if m == nil {
			t.Errorf("%s: shutdown budget %s not found; update shutdownBudgets and re-check %s's kill_timeout", b.file, b.pattern, b.job)
			continue
		}
		secs, _ := strconv.Atoi(string(m[1]))
		need := time.Duration(b.times)*time.Duration(secs)*time.Second + b.extra
		j := jobs[b.job]
		if j == nil {
			t.Errorf("no job %s", b.job)
			continue
		}
		found := false
		for _, g := range j.groups() {
			for _, task := range blocks(g.Body, "task") {
				if task.Labels[0] != b.task {
					continue
				}
				found = true
				kt, _ := literal(task.Body, "kill_timeout")
				d, err := time.ParseDuration(kt)
				if err != nil || d < need {
					t.Errorf("%s/%s: kill_timeout %q does not cover the code's shutdown budget %s (%s)", b.job, b.task, kt, need, b.file)
				}
				if err == nil && d > need+10*time.Second {
					t.Errorf("%s/%s: kill_timeout %s is far above the code's budget %s: a hung process would hold a deploy that long", b.job, b.task, d, need)
				}
			}
		}
		if !found {
			t.Errorf("%s: no task %q", b.job, b.task)
		}
	}
}

// TestWorkerJobReachesHostPaths checks what the worker needs from its host:
// the Podman driver with the host network (it listens on the host's ports
// and loads the sandboxes' nftables firewall there) and NET_ADMIN for it,
// but neither privileged mode nor the host pid namespace (its agent check needs no host
// pid), and its host volumes mounted at the host path (it hands paths to
// the Podman service, which resolves them on the host).
func TestWorkerJobReachesHostPaths(t *testing.T) {
	c := newNomadContext(t)
	var worker *nomadJob
	for _, j := range loadJobs(t) {
		if j.name == "opensandbox-worker" {
			worker = j
		}
	}
	if worker == nil {
		t.Fatal("no opensandbox-worker job")
	}
	if worker.typ != "system" || worker.nodeClass != "worker" {
		t.Errorf("opensandbox-worker: type %q on node class %q, want a system job on class worker", worker.typ, worker.nodeClass)
	}
	for _, g := range worker.groups() {
		vols := map[string]string{}
		for _, v := range blocks(g.Body, "volume") {
			src, _ := literal(v.Body, "source")
			vols[v.Labels[0]] = src
		}
		for _, task := range blocks(g.Body, "task") {
			driver, _ := literal(task.Body, "driver")
			if task.Labels[0] == "worker" {
				var netMode, pid string
				var privileged, netAdmin bool
				for _, cfg := range blocks(task.Body, "config") {
					netMode, _ = literal(cfg.Body, "network_mode")
					pid, _ = literal(cfg.Body, "pid_mode")
					if a, ok := cfg.Body.Attributes["privileged"]; ok {
						v, _ := a.Expr.Value(nil)
						privileged = v.True()
					}
					if a, ok := cfg.Body.Attributes["cap_add"]; ok {
						v, _ := a.Expr.Value(nil)
						for _, c := range v.AsValueSlice() {
							netAdmin = netAdmin || strings.EqualFold(c.AsString(), "net_admin")
						}
					}
				}
				if driver != "podman" || netMode != "host" || !netAdmin || privileged || pid != "" {
					t.Errorf("worker task: driver %q network_mode %q net_admin %v privileged %v pid_mode %q: want podman, the host network, NET_ADMIN (no more) and its own pid namespace",
						driver, netMode, netAdmin, privileged, pid)
				}
			}
			for _, vm := range blocks(task.Body, "volume_mount") {
				vol, _ := literal(vm.Body, "volume")
				dest, _ := literal(vm.Body, "destination")
				if host := c.hostVolumes["worker"][vols[vol]]; host != dest {
					t.Errorf("task %s mounts volume %s at %q, but its host path is %q: Podman would resolve the worker's paths elsewhere", task.Labels[0], vol, dest, host)
				}
			}
		}
	}
}

// TestPortsAgree compares the static ports of the jobs with the ports the
// Terraform security groups open.
func TestPortsAgree(t *testing.T) {
	f := mustParseHCL(t, path(t, "terraform", "modules", "network", "variables.tf"))
	var tfPorts map[string]int
	for _, b := range blocks(f.body, "variable") {
		if b.Labels[0] != "ports" {
			continue
		}
		v, diags := b.Body.Attributes["default"].Expr.Value(nil)
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		tfPorts = map[string]int{}
		for k, n := range v.AsValueMap() {
			i, _ := n.AsBigFloat().Int64()
			tfPorts[k] = int(i)
		}
	}
	want := map[string]string{ // job/port label -> key of the ports variable
		"opensandbox-worker/http": "worker_http", "opensandbox-worker/grpc": "worker_grpc",
		"opensandbox-controlplane/http": "controlplane_http", "opensandbox-syncer/http": "syncer_http",
		"nats/client": "nats_client", "nats/cluster": "nats_cluster", "nats/monitor": "nats_monitor",
		"prometheus/http": "prometheus", "grafana/http": "grafana", "alertmanager/http": "alertmanager",
	}
	seen := map[string]bool{}
	for _, j := range loadJobs(t) {
		for _, g := range j.groups() {
			for _, n := range blocks(g.Body, "network") {
				for _, p := range blocks(n.Body, "port") {
					key := j.name + "/" + p.Labels[0]
					static, ok := literal(p.Body, "static")
					if !ok {
						continue
					}
					seen[key] = true
					if tfPorts[want[key]] == 0 {
						t.Errorf("%s: static port %s has no entry in the network module's ports", key, static)
					} else if strconv.Itoa(tfPorts[want[key]]) != static {
						t.Errorf("%s: job uses %s, security groups open %d (%s)", key, static, tfPorts[want[key]], want[key])
					}
				}
			}
		}
	}
	for key := range want {
		if !seen[key] {
			t.Errorf("%s: no static port in the job", key)
		}
	}
}

// TestNomadChecksCanFail feeds the job checks broken jobs.
func TestNomadChecksCanFail(t *testing.T) {
	base := t.TempDir()
	c := nomadContext{maxKillTimeout: time.Minute, hostVolumes: map[string]map[string]string{"worker": {"data": "/d"}},
		envKnown: map[string]bool{"OPENSANDBOX_PORT": true}, fileBase: base}
	job := func(task, extra string) string {
		return `job "opensandbox-x" {
  constraint {
    attribute = "${node.class}"
    value     = "worker"
  }
  update {
    max_parallel = 1
  }
  group "g" {
    restart {
      attempts = 1
    }
    ` + extra + `
    service {
      name = "x"
      check {
        type = "http"
        path = "/health"
      }
    }
    task "t" {
      ` + task + `
    }
  }
}`
	}
	cases := map[string]struct{ src, want string }{
		"no kill_timeout":  {job(`driver = "exec"`, ""), "has no literal kill_timeout"},
		"too long":         {job(`kill_timeout = "5m"`, ""), "exceeds the clients' max_kill_timeout"},
		"unknown env":      {job("kill_timeout = \"5s\"\nenv {\nOPENSANDBOX_NOPE = \"1\"\n}", ""), "sets OPENSANDBOX_NOPE, which no binary reads"},
		"unknown template": {job("kill_timeout = \"5s\"\ntemplate {\nenv = true\ndata = <<-EOT\nOPENSANDBOX_TYPO=1\nEOT\n}", ""), "sets OPENSANDBOX_TYPO"},
		"missing volume":   {job(`kill_timeout = "5s"`, "volume \"v\" {\ntype = \"host\"\nsource = \"nope\"\n}"), `host volume "nope" is not configured`},
		"missing file":     {job("kill_timeout = \"5s\"\ntemplate {\ndata = file(\"nope.yml\")\n}", ""), `file("nope.yml") does not exist`},
		"no health path": {strings.Replace(job(`kill_timeout = "5s"`, ""), `path = "/health"`, `path = "/ready"`, 1),
			"no service has an HTTP check on /health"},
		"no check": {strings.Replace(job(`kill_timeout = "5s"`, ""), "check {\n        type = \"http\"\n        path = \"/health\"\n      }", "", 1),
			"service has no check"},
		"no restart": {strings.Replace(job(`kill_timeout = "5s"`, ""), "restart {\n      attempts = 1\n    }", "", 1), "has no restart block"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			f, diags := parseHCL("job.nomad.hcl", []byte(tc.src))
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			j, err := newJob(f)
			if err != nil {
				t.Fatal(err)
			}
			problems := checkJob(j, c)
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tc.want) }) {
				t.Errorf("problems %q do not mention %q", problems, tc.want)
			}
		})
	}
}
