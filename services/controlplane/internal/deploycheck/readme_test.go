package deploycheck

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var updateReadmes = flag.Bool("update-readmes", false, "rewrite the inputs/outputs tables of terraform/modules/*/README.md")

const (
	tfDocsBegin = "<!-- BEGIN_TF_DOCS: generated from the .tf files; go test ./services/controlplane/internal/deploycheck -run TestModuleReadmes -args -update-readmes -->"
	tfDocsEnd   = "<!-- END_TF_DOCS -->"
)

func cell(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	return strings.ReplaceAll(s, "|", `\|`)
}

// moduleTables renders a module's inputs and outputs as Markdown tables.
func moduleTables(m *tfModule) string {
	var b strings.Builder
	b.WriteString("## Inputs\n\n| name | type | default | description |\n|---|---|---|---|\n")
	names := make([]string, 0, len(m.variables))
	for n := range m.variables {
		names = append(names, n)
	}
	slices.Sort(names)
	var file *hclFile
	for _, n := range names {
		v := m.variables[n]
		for _, f := range m.files {
			if f.path == v.DefRange().Filename {
				file = f
			}
		}
		typ, def := "", "required"
		if a, ok := v.Body.Attributes["type"]; ok {
			typ = "`" + cell(file.source(a.Expr.Range())) + "`"
		}
		if a, ok := v.Body.Attributes["default"]; ok {
			def = "`" + cell(file.source(a.Expr.Range())) + "`"
		}
		d, _ := literal(v.Body, "description")
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", n, typ, def, cell(d))
	}
	b.WriteString("\n## Outputs\n\n| name | description |\n|---|---|\n")
	type out struct{ name, desc string }
	var outs []out
	for _, f := range m.files {
		for _, o := range blocks(f.body, "output") {
			d, _ := literal(o.Body, "description")
			outs = append(outs, out{o.Labels[0], d})
		}
	}
	slices.SortFunc(outs, func(a, b out) int { return strings.Compare(a.name, b.name) })
	for _, o := range outs {
		fmt.Fprintf(&b, "| `%s` | %s |\n", o.name, cell(o.desc))
	}
	return b.String()
}

// checkReadme compares a README's generated part with the module.
func checkReadme(readme string, m *tfModule) (string, error) {
	want := tfDocsBegin + "\n\n" + moduleTables(m) + "\n" + tfDocsEnd
	i, j := strings.Index(readme, tfDocsBegin), strings.Index(readme, tfDocsEnd)
	if i < 0 || j < i {
		return readme, fmt.Errorf("no generated inputs/outputs section (%s ... %s)", tfDocsBegin[:20], tfDocsEnd)
	}
	if strings.TrimSpace(readme[:i]) == "" || !strings.HasPrefix(strings.TrimSpace(readme), "# ") {
		return readme, fmt.Errorf("no title and prose before the tables: say what the module is for")
	}
	updated := readme[:i] + want + readme[j+len(tfDocsEnd):]
	if updated != readme {
		return updated, fmt.Errorf("inputs/outputs tables are out of date with the .tf files")
	}
	return readme, nil
}

// TestModuleReadmes checks that every Terraform module has a README whose
// inputs and outputs tables match its variables and outputs.
func TestModuleReadmes(t *testing.T) {
	dirs, _ := filepath.Glob(path(t, "terraform", "modules", "*"))
	if len(dirs) == 0 {
		t.Fatal("no modules")
	}
	for _, dir := range dirs {
		m, err := loadTFModule(dir)
		if err != nil {
			t.Errorf("%s: %v", rel(t, dir), err)
			continue
		}
		p := filepath.Join(dir, "README.md")
		b, err := os.ReadFile(p)
		if err != nil {
			t.Errorf("%s: %v", rel(t, p), err)
			continue
		}
		updated, err := checkReadme(string(b), m)
		if err == nil {
			continue
		}
		if *updateReadmes && updated != string(b) {
			if werr := os.WriteFile(p, []byte(updated), 0o644); werr != nil {
				t.Fatal(werr)
			}
			t.Logf("%s: tables rewritten", rel(t, p))
			continue
		}
		t.Errorf("%s: %v", rel(t, p), err)
	}
}

func TestModuleReadmeCheckCanFail(t *testing.T) {
	f, diags := parseHCL("variables.tf", []byte(`variable "a" {
  description = "the a"
  type        = string
}
output "o" {
  description = "the o"
  value       = var.a
}`))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	m := newTFModule("m", []*hclFile{f})
	good := "# m\n\nWhat m is for.\n\n" + tfDocsBegin + "\n\n" + moduleTables(m) + "\n" + tfDocsEnd + "\n"
	if _, err := checkReadme(good, m); err != nil {
		t.Fatalf("a current README fails: %v", err)
	}
	for name, readme := range map[string]string{
		"stale":    strings.Replace(good, "the a", "an old a", 1),
		"no table": "# m\n\nWhat m is for.\n",
		"no prose": tfDocsBegin + "\n\n" + moduleTables(m) + "\n" + tfDocsEnd,
	} {
		if _, err := checkReadme(readme, m); err == nil {
			t.Errorf("%s README passes", name)
		}
	}
}
