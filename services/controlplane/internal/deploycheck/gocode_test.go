package deploycheck

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// goSource is the parsed non-test Go code of the services: what the binaries
// really register and read.
type goSource struct {
	files []*ast.File
}

var parseServices = sync.OnceValues(func() (*goSource, error) {
	r, err := repoRoot()
	if err != nil {
		return nil, err
	}
	fset := token.NewFileSet()
	src := &goSource{}
	err = filepath.WalkDir(filepath.Join(r, "services"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		src.files = append(src.files, f)
		return nil
	})
	return src, err
})

func services(t *testing.T) *goSource {
	t.Helper()
	s, err := parseServices()
	if err != nil {
		t.Fatalf("parse services: %v", err)
	}
	return s
}

func stringLit(e ast.Expr) (string, bool) {
	bl, ok := e.(*ast.BasicLit)
	if !ok || bl.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(bl.Value)
	return s, err == nil
}

var envName = regexp.MustCompile(`^[A-Z][A-Z0-9_]+$`)

// envVars returns the environment variables the code reads: os.Getenv,
// os.LookupEnv and the typed readers of services/shared/config
// (e.String("NAME", ...), e.Int, e.Int64, e.Duration, e.Bool, e.List).
func (s *goSource) envVars() map[string]bool {
	readers := map[string]bool{"Getenv": true, "LookupEnv": true, "String": true, "Int": true, "Int64": true, "Duration": true, "Bool": true, "List": true}
	out := map[string]bool{}
	for _, f := range s.files {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || !readers[sel.Sel.Name] {
				return true
			}
			if name, ok := stringLit(call.Args[0]); ok && envName.MatchString(name) {
				out[name] = true
			}
			return true
		})
	}
	return out
}

// metricDef is one registered Prometheus metric.
type metricDef struct {
	kind   string // counter, gauge, histogram, summary
	labels map[string]bool
}

var optsKind = map[string]string{"CounterOpts": "counter", "GaugeOpts": "gauge", "HistogramOpts": "histogram", "SummaryOpts": "summary"}

// metrics returns every metric the code registers with
// prometheus.New{Counter,Gauge,Histogram,Summary}[Vec](Opts{Name: ...},
// labels). A name built from a function parameter ("opensandbox_grpc_" +
// side + "_requests_total") is expanded with the string literals passed for
// that parameter at the function's call sites.
func (s *goSource) metrics() map[string]metricDef {
	out := map[string]metricDef{}
	for _, f := range s.files {
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok || len(call.Args) == 0 {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || !strings.HasPrefix(sel.Sel.Name, "New") {
					return true
				}
				lit, ok := call.Args[0].(*ast.CompositeLit)
				if !ok {
					return true
				}
				typ, ok := lit.Type.(*ast.SelectorExpr)
				if !ok || optsKind[typ.Sel.Name] == "" {
					return true
				}
				def := metricDef{kind: optsKind[typ.Sel.Name], labels: map[string]bool{}}
				if len(call.Args) > 1 {
					if ls, ok := call.Args[1].(*ast.CompositeLit); ok {
						for _, e := range ls.Elts {
							if l, ok := stringLit(e); ok {
								def.labels[l] = true
							}
						}
					}
				}
				for _, el := range lit.Elts {
					kv, ok := el.(*ast.KeyValueExpr)
					if !ok {
						continue
					}
					if k, ok := kv.Key.(*ast.Ident); ok && k.Name == "Name" {
						for _, name := range s.expand(kv.Value, fn) {
							out[name] = def
						}
					}
				}
				return true
			})
		}
	}
	return out
}

// expand evaluates a string expression of literals, concatenations and
// parameters of fn.
func (s *goSource) expand(e ast.Expr, fn *ast.FuncDecl) []string {
	switch e := e.(type) {
	case *ast.BasicLit:
		if v, ok := stringLit(e); ok {
			return []string{v}
		}
	case *ast.BinaryExpr:
		if e.Op != token.ADD {
			return nil
		}
		var out []string
		for _, l := range s.expand(e.X, fn) {
			for _, r := range s.expand(e.Y, fn) {
				out = append(out, l+r)
			}
		}
		return out
	case *ast.Ident:
		return s.paramValues(fn, e.Name)
	}
	return nil
}

// paramValues returns the string literals passed as parameter param of fn
// at its call sites (calls by the function's name, any receiver or package).
func (s *goSource) paramValues(fn *ast.FuncDecl, param string) []string {
	idx, i := -1, 0
	for _, field := range fn.Type.Params.List {
		for _, n := range field.Names {
			if n.Name == param {
				idx = i
			}
			i++
		}
	}
	if idx < 0 {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, f := range s.files {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) <= idx {
				return true
			}
			var name string
			switch fun := call.Fun.(type) {
			case *ast.Ident:
				name = fun.Name
			case *ast.SelectorExpr:
				name = fun.Sel.Name
			}
			if name != fn.Name.Name {
				return true
			}
			if v, ok := stringLit(call.Args[idx]); ok && !seen[v] {
				seen[v] = true
				out = append(out, v)
			}
			return true
		})
	}
	return out
}

// TestGoScanFindsTheRealMetrics guards the extraction itself: if it found
// nothing, every dashboard check would pass vacuously.
func TestGoScanFindsTheRealMetrics(t *testing.T) {
	m := services(t).metrics()
	for name, kind := range map[string]string{
		"opensandbox_sandboxes_active":                "gauge",
		"opensandbox_sandbox_create_duration_seconds": "histogram",
		"opensandbox_commands_total":                  "counter",
		"opensandbox_grpc_client_requests_total":      "counter", // built from a parameter
		"opensandbox_grpc_server_requests_total":      "counter",
		"opensandbox_syncer_pending":                  "gauge",
	} {
		if m[name].kind != kind {
			t.Errorf("metric %s: found kind %q, want %q", name, m[name].kind, kind)
		}
	}
	if !m["opensandbox_commands_total"].labels["exit_class"] {
		t.Errorf("labels of opensandbox_commands_total: %v, want exit_class", m["opensandbox_commands_total"].labels)
	}
	env := services(t).envVars()
	for _, v := range []string{"OPENSANDBOX_WORKER_URL", "NATS_URL", "DATABASE_URL", "OPENSANDBOX_SYNCER_PORT", "OPENSANDBOX_CAPACITY"} {
		if !env[v] {
			t.Errorf("environment variable %s not found in the code", v)
		}
	}
}
