package deploycheck

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestYAMLParses parses every YAML file of the deployment, checking that
// mapping keys are unique too (yaml.v3 refuses duplicates).
func TestYAMLParses(t *testing.T) {
	for _, dir := range []string{"ansible", "nomad"} {
		for _, p := range files(t, dir, ".yml", ".yaml") {
			var v any
			if err := yaml.Unmarshal(read(t, p), &v); err != nil {
				t.Errorf("%s: %v", rel(t, p), err)
			} else if v == nil {
				t.Errorf("%s: empty document", rel(t, p))
			}
		}
	}
}

// task is one Ansible task, kept generic: its module is the key that is not
// a task keyword.
type task map[string]any

var taskKeywords = map[string]bool{
	"name": true, "when": true, "register": true, "notify": true, "loop": true, "loop_control": true,
	"become": true, "no_log": true, "changed_when": true, "failed_when": true, "environment": true,
	"tags": true, "vars": true, "args": true, "ignore_errors": true, "until": true, "retries": true,
	"delay": true, "listen": true, "delegate_to": true, "run_once": true, "check_mode": true,
}

func (tk task) module() (string, any) {
	for k, v := range tk {
		if !taskKeywords[k] {
			return k, v
		}
	}
	return "", nil
}

// asMap returns a module's arguments as a map (yaml.v3 decodes nested
// mappings of a task into the task's own map type).
func asMap(v any) map[string]any {
	switch m := v.(type) {
	case task:
		return m
	case map[string]any:
		return m
	}
	return nil
}

func (tk task) notifies() []string {
	switch n := tk["notify"].(type) {
	case string:
		return []string{n}
	case []any:
		var out []string
		for _, x := range n {
			out = append(out, fmt.Sprint(x))
		}
		return out
	}
	return nil
}

// secretVars are the variables holding secrets; a task that renders them
// must not log.
var secretVars = regexp.MustCompile(`\b(consul_gossip_key|nomad_gossip_key|consul_server_key_pem|nomad_agent_key_pem|consul_agent_token|nomad_consul_token|consul_dns_token)\b`)

// checkTasks returns what is wrong with a role's task list: unnamed tasks,
// modules not named by their fully qualified name, command/shell tasks that
// would report a change on every run, handlers notified that do not exist,
// template sources missing from the role, and secrets rendered without
// no_log.
func checkTasks(where string, tasks []task, handlers map[string]bool, templateDir string) []string {
	var problems []string
	for i, tk := range tasks {
		name, _ := tk["name"].(string)
		at := fmt.Sprintf("%s task %d %q", where, i+1, name)
		if name == "" {
			problems = append(problems, at+": has no name")
		}
		mod, args := tk.module()
		if !strings.Contains(mod, ".") {
			problems = append(problems, fmt.Sprintf("%s: module %q is not fully qualified (ansible.builtin.%s)", at, mod, mod))
		}
		short := mod[strings.LastIndex(mod, ".")+1:]
		if short == "command" || short == "shell" || short == "raw" {
			argMap := asMap(args)
			_, creates := argMap["creates"]
			_, removes := argMap["removes"]
			if _, ok := tk["changed_when"]; !ok && !creates && !removes {
				problems = append(problems, at+": command without changed_when, creates or removes is not idempotent")
			}
		}
		for _, h := range tk.notifies() {
			if !handlers[h] {
				problems = append(problems, fmt.Sprintf("%s: notifies %q, which no role defines", at, h))
			}
		}
		if short == "template" {
			src, _ := asMap(args)["src"].(string)
			srcs := []string{src}
			// src: "{{ item }}.j2" over a loop of names: check each.
			if items, ok := tk["loop"].([]any); ok && strings.Contains(src, "{{ item }}") {
				srcs = nil
				for _, it := range items {
					srcs = append(srcs, strings.ReplaceAll(src, "{{ item }}", fmt.Sprint(it)))
				}
			}
			for _, src := range srcs {
				b, err := os.ReadFile(filepath.Join(templateDir, src))
				if err != nil {
					problems = append(problems, fmt.Sprintf("%s: template %s: %v", at, src, err))
				} else if secretVars.Match(b) && tk["no_log"] != true {
					problems = append(problems, fmt.Sprintf("%s: template %s renders a secret without no_log: true", at, src))
				}
			}
		}
	}
	return problems
}

func loadTasks(t *testing.T, p string) []task {
	t.Helper()
	var tasks []task
	if _, err := os.Stat(p); err != nil {
		return nil
	}
	loadYAML(t, p, &tasks)
	return tasks
}

// TestAnsiblePlaybook checks the playbook and its roles.
func TestAnsiblePlaybook(t *testing.T) {
	var plays []struct {
		Hosts string `yaml:"hosts"`
		Roles []struct {
			Role string `yaml:"role"`
		} `yaml:"roles"`
	}
	loadYAML(t, path(t, "ansible", "site.yml"), &plays)
	if len(plays) == 0 {
		t.Fatal("ansible/site.yml has no play")
	}
	handlers := map[string]bool{}
	roleDirs, _ := filepath.Glob(path(t, "ansible", "roles", "*"))
	for _, dir := range roleDirs {
		for _, h := range loadTasks(t, filepath.Join(dir, "handlers", "main.yml")) {
			name, _ := h["name"].(string)
			handlers[name] = true
			if l, ok := h["listen"].(string); ok {
				handlers[l] = true
			}
		}
	}
	var used []string
	for _, play := range plays {
		for _, r := range play.Roles {
			used = append(used, r.Role)
			dir := path(t, "ansible", "roles", r.Role)
			tasks := loadTasks(t, filepath.Join(dir, "tasks", "main.yml"))
			if len(tasks) == 0 {
				t.Errorf("role %s: no tasks/main.yml", r.Role)
			}
			for _, p := range checkTasks("role "+r.Role, tasks, handlers, filepath.Join(dir, "templates")) {
				t.Error(p)
			}
			for _, p := range checkTasks("role "+r.Role+" handlers", loadTasks(t, filepath.Join(dir, "handlers", "main.yml")), handlers, "") {
				t.Error(p)
			}
		}
	}
	for _, want := range []string{"podman", "sandbox_images", "consul", "nomad", "node_exporter"} {
		if !slices.Contains(used, want) {
			t.Errorf("site.yml does not apply role %s", want)
		}
	}
	for _, dir := range roleDirs {
		if !slices.Contains(used, filepath.Base(dir)) {
			t.Errorf("role %s is not used by site.yml", filepath.Base(dir))
		}
	}
}

// TestAnsibleUsesTheProjectContainersConf checks that the hosts get the
// project's Podman settings: the role copies scripts/containers.conf, which
// must select runc and empty default ulimits, and the image build script it
// runs exists.
func TestAnsibleUsesTheProjectContainersConf(t *testing.T) {
	tasks := loadTasks(t, path(t, "ansible", "roles", "podman", "tasks", "main.yml"))
	copied := false
	for _, tk := range tasks {
		if mod, args := tk.module(); strings.HasSuffix(mod, "copy") {
			src, _ := asMap(args)["src"].(string)
			copied = copied || strings.HasSuffix(src, "/scripts/containers.conf")
		}
	}
	if !copied {
		t.Error("the podman role does not install scripts/containers.conf")
	}
	conf := string(read(t, path(t, "scripts", "containers.conf")))
	for _, want := range []*regexp.Regexp{regexp.MustCompile(`(?m)^runtime\s*=\s*"runc"`), regexp.MustCompile(`(?m)^default_ulimits\s*=\s*\[\]`)} {
		if !want.MatchString(conf) {
			t.Errorf("scripts/containers.conf lacks %s", want)
		}
	}
	if _, err := os.Stat(path(t, "scripts", "build-images.sh")); err != nil {
		t.Errorf("the sandbox_images role runs scripts/build-images.sh: %v", err)
	}
}

// TestAnsibleChecksCanFail feeds the task check broken tasks.
func TestAnsibleChecksCanFail(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "secret.j2"), []byte(`encrypt = "{{ consul_gossip_key }}"`), 0o644)
	handlers := map[string]bool{"Restart Nomad": true}
	for src, want := range map[string]string{
		"- ansible.builtin.file: {path: /x, state: directory}":                                        "has no name",
		"- name: x\n  apt: {name: curl}":                                                              "is not fully qualified",
		"- name: x\n  ansible.builtin.command: make":                                                  "is not idempotent",
		"- name: x\n  ansible.builtin.file: {path: /x}\n  notify: Restart Nomda":                      `notifies "Restart Nomda"`,
		"- name: x\n  ansible.builtin.template: {src: nope.j2, dest: /x}":                             "template nope.j2",
		"- name: x\n  ansible.builtin.template: {src: secret.j2, dest: /x}":                           "renders a secret without no_log",
		"- name: ok\n  ansible.builtin.command: make\n  changed_when: false\n  notify: Restart Nomad": "",
	} {
		var tasks []task
		if err := yaml.Unmarshal([]byte(src), &tasks); err != nil {
			t.Fatal(err)
		}
		problems := checkTasks("test", tasks, handlers, dir)
		if want == "" {
			if len(problems) > 0 {
				t.Errorf("%q: unexpected problems %q", src, problems)
			}
			continue
		}
		if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, want) }) {
			t.Errorf("%q: problems %q do not mention %q", src, problems, want)
		}
	}
}

// TestNoLiteralSecretsInYAML walks every YAML file for secret-looking keys
// with literal values.
func TestNoLiteralSecretsInYAML(t *testing.T) {
	for _, dir := range []string{"ansible", "nomad"} {
		for _, p := range files(t, dir, ".yml", ".yaml") {
			var doc yaml.Node
			if err := yaml.Unmarshal(read(t, p), &doc); err != nil {
				continue // TestYAMLParses reports it
			}
			for _, problem := range yamlSecrets(&doc) {
				t.Errorf("%s: %s", rel(t, p), problem)
			}
		}
	}
	var doc yaml.Node
	yaml.Unmarshal([]byte("a:\n  nomad_gossip_key: c2VjcmV0c2VjcmV0\n"), &doc)
	if len(yamlSecrets(&doc)) == 0 {
		t.Error("the YAML secret check misses a literal gossip key")
	}
}

func yamlSecrets(n *yaml.Node) []string {
	var out []string
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if secretName.MatchString(k.Value) && v.Kind == yaml.ScalarNode && v.Value != "" && !strings.Contains(v.Value, "{{") {
				out = append(out, fmt.Sprintf("line %d: %s has a literal value", k.Line, k.Value))
			}
		}
	}
	for _, c := range n.Content {
		out = append(out, yamlSecrets(c)...)
	}
	return out
}
