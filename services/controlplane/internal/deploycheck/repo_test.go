package deploycheck

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"gopkg.in/yaml.v3"
)

// repoRoot is the directory holding go.work, found from the test's working
// directory (the package directory under go test).
var repoRoot = sync.OnceValues(func() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fs.ErrNotExist
		}
		dir = parent
	}
})

func root(t *testing.T) string {
	t.Helper()
	r, err := repoRoot()
	if err != nil {
		t.Fatalf("repository root (go.work) not found: %v", err)
	}
	return r
}

// path joins parts under the repository root.
func path(t *testing.T, parts ...string) string {
	return filepath.Join(append([]string{root(t)}, parts...)...)
}

// files lists the files under dir (relative to the root) whose names end in
// one of suffixes, sorted.
func files(t *testing.T, dir string, suffixes ...string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(path(t, dir), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".terraform" || d.Name() == ".git") {
			return filepath.SkipDir
		}
		if d.IsDir() {
			return nil
		}
		for _, s := range suffixes {
			if strings.HasSuffix(d.Name(), s) {
				out = append(out, p)
				break
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	slices.Sort(out)
	if len(out) == 0 {
		t.Fatalf("no %v files under %s", suffixes, dir)
	}
	return out
}

func rel(t *testing.T, p string) string {
	r, err := filepath.Rel(root(t), p)
	if err != nil {
		return p
	}
	return r
}

func read(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// hclFile is one parsed HCL file with its source (to slice heredocs out of).
type hclFile struct {
	path string
	src  []byte
	body *hclsyntax.Body
}

// parseHCL parses src in HCL native syntax.
func parseHCL(name string, src []byte) (*hclFile, hcl.Diagnostics) {
	f, diags := hclparse.NewParser().ParseHCL(src, name)
	if diags.HasErrors() {
		return nil, diags
	}
	return &hclFile{path: name, src: src, body: f.Body.(*hclsyntax.Body)}, diags
}

func mustParseHCL(t *testing.T, p string) *hclFile {
	t.Helper()
	f, diags := parseHCL(p, read(t, p))
	if diags.HasErrors() {
		t.Fatalf("%s: %s", rel(t, p), diags.Error())
	}
	return f
}

// blocks returns the blocks of body of the given type.
func blocks(body *hclsyntax.Body, typ string) []*hclsyntax.Block {
	var out []*hclsyntax.Block
	for _, b := range body.Blocks {
		if b.Type == typ {
			out = append(out, b)
		}
	}
	return out
}

// literal returns an attribute's value when it is a literal string, number
// or bool without interpolation.
func literal(body *hclsyntax.Body, name string) (string, bool) {
	a, ok := body.Attributes[name]
	if !ok {
		return "", false
	}
	return exprLiteral(a.Expr)
}

func exprLiteral(e hclsyntax.Expression) (string, bool) {
	switch e := e.(type) {
	case *hclsyntax.TemplateExpr:
		if len(e.Parts) == 0 {
			return "", true
		}
		if !e.IsStringLiteral() {
			return "", false
		}
		return exprLiteral(e.Parts[0])
	case *hclsyntax.LiteralValueExpr:
		v := e.Val
		switch {
		case v.IsNull():
			return "", false
		case v.Type().FriendlyName() == "string":
			return v.AsString(), true
		case v.Type().FriendlyName() == "number":
			return v.AsBigFloat().String(), true
		case v.Type().FriendlyName() == "bool":
			if v.True() {
				return "true", true
			}
			return "false", true
		}
	}
	return "", false
}

// source returns the text of a range of f.
func (f *hclFile) source(r hcl.Range) string {
	return string(r.SliceBytes(f.src))
}

// loadYAML parses a YAML file into a generic value.
func loadYAML(t *testing.T, p string, into any) {
	t.Helper()
	if err := yaml.Unmarshal(read(t, p), into); err != nil {
		t.Fatalf("%s: %v", rel(t, p), err)
	}
}

// groupVars is ansible/group_vars/all.yml, the deployment's shared settings.
type groupVars struct {
	NomadMaxKillTimeout string `yaml:"nomad_max_kill_timeout"`
	NomadHostVolumes    map[string][]struct {
		Name string `yaml:"name"`
		Path string `yaml:"path"`
	} `yaml:"nomad_host_volumes"`
}

func loadGroupVars(t *testing.T) groupVars {
	var gv groupVars
	loadYAML(t, path(t, "ansible", "group_vars", "all.yml"), &gv)
	return gv
}
