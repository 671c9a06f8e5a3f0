package deploycheck

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// TestHCLFilesParse parses every Terraform and Nomad file, the examples
// included.
func TestHCLFilesParse(t *testing.T) {
	for _, dir := range []string{"terraform", "nomad"} {
		for _, p := range files(t, dir, ".tf", ".hcl", ".tfvars", ".hcl.example", ".tfvars.example") {
			if _, diags := parseHCL(p, read(t, p)); diags.HasErrors() {
				t.Errorf("%s: %s", rel(t, p), diags.Error())
			}
		}
	}
}

// tfModule is the declarations of one Terraform directory.
type tfModule struct {
	dir       string
	files     []*hclFile
	variables map[string]*hclsyntax.Block
	locals    map[string]bool
	modules   map[string]*hclsyntax.Block
}

func newTFModule(dir string, fs []*hclFile) *tfModule {
	m := &tfModule{dir: dir, files: fs, variables: map[string]*hclsyntax.Block{}, locals: map[string]bool{}, modules: map[string]*hclsyntax.Block{}}
	for _, f := range fs {
		for _, b := range f.body.Blocks {
			switch {
			case b.Type == "variable" && len(b.Labels) == 1:
				m.variables[b.Labels[0]] = b
			case b.Type == "module" && len(b.Labels) == 1:
				m.modules[b.Labels[0]] = b
			case b.Type == "locals":
				for name := range b.Body.Attributes {
					m.locals[name] = true
				}
			}
		}
	}
	return m
}

func loadTFModule(dir string) (*tfModule, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.tf"))
	if err != nil || len(names) == 0 {
		return nil, fmt.Errorf("no .tf files in %s", dir)
	}
	var fs []*hclFile
	for _, n := range names {
		src, err := os.ReadFile(n)
		if err != nil {
			return nil, err
		}
		f, diags := parseHCL(n, src)
		if diags.HasErrors() {
			return nil, diags
		}
		fs = append(fs, f)
	}
	return newTFModule(dir, fs), nil
}

// secretName matches attribute, variable and YAML key names that hold
// credentials.
var secretName = regexp.MustCompile(`(?i)(^|_)(password|passwd|secret|token|api_?key|access_key|private_key|gossip_key)($|_)`)

// checkTFModule returns what is wrong with one module: variables without a
// description or a type, secret-looking variables with defaults or not
// marked sensitive, outputs without a description, references to undeclared
// variables, locals or modules, and module calls that do not match the
// called module's variables (load resolves a local source directory).
func checkTFModule(m *tfModule, load func(dir string) (*tfModule, error)) []string {
	var problems []string
	add := func(r hcl.Range, format string, args ...any) {
		problems = append(problems, fmt.Sprintf("%s:%d: ", r.Filename, r.Start.Line)+fmt.Sprintf(format, args...))
	}
	for name, b := range m.variables {
		if d, ok := literal(b.Body, "description"); !ok || strings.TrimSpace(d) == "" {
			add(b.DefRange(), "variable %q has no description", name)
		}
		if _, ok := b.Body.Attributes["type"]; !ok {
			add(b.DefRange(), "variable %q has no type", name)
		}
		if secretName.MatchString(name) {
			if s, _ := literal(b.Body, "sensitive"); s != "true" {
				add(b.DefRange(), "variable %q looks like a secret but is not sensitive = true", name)
			}
			if d, ok := literal(b.Body, "default"); ok && d != "" {
				add(b.DefRange(), "variable %q looks like a secret and has a literal default", name)
			}
		}
	}
	for _, f := range m.files {
		for _, b := range blocks(f.body, "output") {
			if d, ok := literal(b.Body, "description"); !ok || d == "" {
				add(b.DefRange(), "output %q has no description", b.Labels[0])
			}
		}
		problems = append(problems, checkSecretLiterals(f)...)
		hclsyntax.VisitAll(f.body, func(n hclsyntax.Node) hcl.Diagnostics {
			e, ok := n.(*hclsyntax.ScopeTraversalExpr)
			if !ok || len(e.Traversal) < 2 {
				return nil
			}
			attr, ok := e.Traversal[1].(hcl.TraverseAttr)
			if !ok {
				return nil
			}
			switch e.Traversal.RootName() {
			case "var":
				if m.variables[attr.Name] == nil {
					add(e.SrcRange, "var.%s is not declared", attr.Name)
				}
			case "local":
				if !m.locals[attr.Name] {
					add(e.SrcRange, "local.%s is not declared", attr.Name)
				}
			case "module":
				if m.modules[attr.Name] == nil {
					add(e.SrcRange, "module.%s is not declared", attr.Name)
				}
			}
			return nil
		})
	}
	meta := map[string]bool{"source": true, "version": true, "count": true, "for_each": true, "providers": true, "depends_on": true}
	for name, b := range m.modules {
		src, _ := literal(b.Body, "source")
		if !strings.HasPrefix(src, "./") && !strings.HasPrefix(src, "../") {
			continue // registry modules are checked by terraform init
		}
		called, err := load(filepath.Join(m.dir, src))
		if err != nil {
			add(b.DefRange(), "module %q: source %s: %v", name, src, err)
			continue
		}
		for arg, a := range b.Body.Attributes {
			if !meta[arg] && called.variables[arg] == nil {
				add(a.NameRange, "module %q passes %q, which %s does not declare", name, arg, src)
			}
		}
		for v, vb := range called.variables {
			if _, hasDefault := vb.Body.Attributes["default"]; !hasDefault && b.Body.Attributes[v] == nil {
				add(b.DefRange(), "module %q does not pass required variable %q of %s", name, v, src)
			}
		}
	}
	slices.Sort(problems)
	return problems
}

// checkSecretLiterals flags attributes with secret-looking names whose value
// is a literal, non-empty string: secrets come from SSM, Secrets Manager and
// Nomad variables, never from the repository.
func checkSecretLiterals(f *hclFile) []string {
	var problems []string
	hclsyntax.VisitAll(f.body, func(n hclsyntax.Node) hcl.Diagnostics {
		a, ok := n.(*hclsyntax.Attribute)
		if !ok || !secretName.MatchString(a.Name) || strings.HasSuffix(a.Name, "_arn") {
			return nil
		}
		if te, ok := a.Expr.(*hclsyntax.TemplateExpr); ok && te.IsStringLiteral() {
			if v, _ := exprLiteral(te); v != "" {
				problems = append(problems, fmt.Sprintf("%s:%d: %s is a literal secret", a.SrcRange.Filename, a.SrcRange.Start.Line, a.Name))
			}
		}
		return nil
	})
	return problems
}

// TestTerraformModules checks every Terraform directory (modules and
// per-region roots).
func TestTerraformModules(t *testing.T) {
	dirs := map[string]bool{}
	for _, p := range files(t, "terraform", ".tf") {
		dirs[filepath.Dir(p)] = true
	}
	if len(dirs) < 5 {
		t.Fatalf("found %d Terraform directories, want the modules and the region roots", len(dirs))
	}
	for dir := range dirs {
		m, err := loadTFModule(dir)
		if err != nil {
			t.Errorf("%s: %v", rel(t, dir), err)
			continue
		}
		for _, p := range checkTFModule(m, loadTFModule) {
			t.Error(p)
		}
	}
}

// TestTerraformRegionRoots checks each envs/<region> root: a remote backend
// without settings in the file (they come from backend.hcl at init), pinned
// Terraform and provider versions, and the region module.
func TestTerraformRegionRoots(t *testing.T) {
	roots, err := filepath.Glob(path(t, "terraform", "envs", "*"))
	if err != nil || len(roots) == 0 {
		t.Fatal("no terraform/envs/<region> roots")
	}
	for _, dir := range roots {
		m, err := loadTFModule(dir)
		if err != nil {
			t.Errorf("%s: %v", rel(t, dir), err)
			continue
		}
		var backend, version, providers bool
		for _, f := range m.files {
			for _, tb := range blocks(f.body, "terraform") {
				if _, ok := tb.Body.Attributes["required_version"]; ok {
					version = true
				}
				providers = providers || len(blocks(tb.Body, "required_providers")) > 0
				for _, b := range blocks(tb.Body, "backend") {
					backend = b.Labels[0] == "s3"
					if len(b.Body.Attributes) > 0 {
						t.Errorf("%s: backend settings belong in backend.hcl (partial configuration), not in the root", rel(t, dir))
					}
				}
			}
		}
		if !backend || !version || !providers {
			t.Errorf("%s: want an s3 backend (%v), required_version (%v) and required_providers (%v)", rel(t, dir), backend, version, providers)
		}
		if _, err := os.Stat(filepath.Join(dir, "backend.hcl.example")); err != nil {
			t.Errorf("%s: no backend.hcl.example documenting the remote state", rel(t, dir))
		}
		if len(m.modules) == 0 {
			t.Errorf("%s: the root uses no module", rel(t, dir))
		}
	}
}

// credentialPattern matches credentials in any text: AWS access key ids and
// PEM private keys.
var credentialPattern = regexp.MustCompile(`\b(AKIA|ASIA)[0-9A-Z]{16}\b|-----BEGIN [A-Z ]*PRIVATE KEY-----`)

// TestNoCredentialsInDeployFiles scans every deployment file as text.
func TestNoCredentialsInDeployFiles(t *testing.T) {
	for _, dir := range []string{"terraform", "nomad", "ansible"} {
		for _, p := range files(t, dir, "") {
			if loc := credentialPattern.FindIndex(read(t, p)); loc != nil {
				t.Errorf("%s: looks like a credential at byte %d", rel(t, p), loc[0])
			}
		}
	}
}

// TestTerraformChecksCanFail feeds the checks broken modules.
func TestTerraformChecksCanFail(t *testing.T) {
	cases := map[string]struct {
		src  string
		want string
	}{
		"no description":     {`variable "a" { type = string }`, `variable "a" has no description`},
		"no type":            {`variable "a" { description = "x" }`, `variable "a" has no type`},
		"undeclared var":     {"output \"o\" {\n description = \"x\"\n value = var.nope\n}", "var.nope is not declared"},
		"undeclared local":   {"output \"o\" {\n description = \"x\"\n value = local.nope\n}", "local.nope is not declared"},
		"output description": {`output "o" { value = 1 }`, `output "o" has no description`},
		"literal secret":     {`resource "x" "y" { master_password = "hunter2hunter2" }`, "master_password is a literal secret"},
		"secret default": {`variable "db_password" {
			description = "x"
			type = string
			sensitive = true
			default = "hunter2"
		}`, `variable "db_password" looks like a secret and has a literal default`},
		"secret not sensitive": {`variable "api_token" {
			description = "x"
			type = string
		}`, `variable "api_token" looks like a secret but is not sensitive = true`},
		"unknown module arg": {`module "m" {
			source = "../called"
			nope = 1
			needed = 2
		}`, `module "m" passes "nope"`},
		"missing module arg": {`module "m" { source = "../called" }`, `does not pass required variable "needed"`},
	}
	called, diags := parseHCL("called/variables.tf", []byte(`variable "needed" {
		description = "x"
		type = number
	}`))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	load := func(string) (*tfModule, error) { return newTFModule("called", []*hclFile{called}), nil }
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			f, diags := parseHCL("main.tf", []byte(c.src))
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			problems := checkTFModule(newTFModule("root", []*hclFile{f}), load)
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, c.want) }) {
				t.Errorf("problems %q do not mention %q", problems, c.want)
			}
		})
	}
}
