package main

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// repoRoot is the directory holding go.work.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir
		}
		if filepath.Dir(dir) == dir {
			t.Fatal("go.work not found")
		}
		dir = filepath.Dir(dir)
	}
}

// buildDir holds the release the tests share; TestMain removes it.
var buildDir string

func TestMain(m *testing.M) {
	var err error
	if buildDir, err = os.MkdirTemp("", "osb-release-test-"); err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(buildDir)
	os.Exit(code)
}

// built is one small release for every test of this package: the agent and
// the syncer (the other binaries are built the same way, only slower), and
// the syncer's image.
var built *Release

func buildOnce(t *testing.T) *Release {
	t.Helper()
	if built != nil {
		return built
	}
	rel, err := Build(context.Background(), quiet(), BuildOptions{
		Root: repoRoot(t), Out: buildDir, Version: "v0.0.0-test",
		Binaries: []Binary{{"osb-agent", "./services/agent"}, {"opensandbox-syncer", "./services/syncer"}},
		Images:   []Image{{"syncer", "opensandbox-syncer"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	built = rel
	return rel
}

// TestBuildPacksStaticBinariesAndImages checks a built release: the tarball
// holds the binaries at its root, each statically linked, its .sha256 is
// its digest, and the image runs the binary as the unprivileged user.
func TestBuildPacksStaticBinariesAndImages(t *testing.T) {
	rel := buildOnce(t)
	f, err := os.Open(rel.Tarball)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	gz, err := gzip.NewReader(io.TeeReader(f, h))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var names []string
	dir := t.TempDir()
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, hdr.Name)
		if fs.FileMode(hdr.Mode)&0o111 == 0 {
			t.Errorf("%s is not executable in the tarball", hdr.Name)
		}
		p := filepath.Join(dir, hdr.Name)
		out, _ := os.Create(p)
		io.Copy(out, tr)
		out.Close()
		e, err := elf.Open(p)
		if err != nil {
			t.Fatalf("%s: %v", hdr.Name, err)
		}
		for _, prog := range e.Progs {
			if prog.Type == elf.PT_INTERP {
				t.Errorf("%s is dynamically linked (has an interpreter)", hdr.Name)
			}
		}
		if libs, _ := e.ImportedLibraries(); len(libs) > 0 {
			t.Errorf("%s needs shared libraries %v", hdr.Name, libs)
		}
		e.Close()
	}
	io.Copy(io.Discard, f)
	if !slices.Equal(names, []string{"osb-agent", "opensandbox-syncer"}) {
		t.Errorf("tarball holds %v", names)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != rel.SHA256 {
		t.Errorf("sha256 %s, release says %s", got, rel.SHA256)
	}
	sumFile, _ := os.ReadFile(rel.Tarball + ".sha256")
	if want := rel.SHA256 + "  " + TarballName("v0.0.0-test") + "\n"; string(sumFile) != want {
		t.Errorf(".sha256 holds %q, want %q (sha256sum -c format)", sumFile, want)
	}
	reopened, err := Open(filepath.Dir(rel.Tarball), "v0.0.0-test")
	if err != nil || reopened.SHA256 != rel.SHA256 {
		t.Errorf("Open: %v %+v", err, reopened)
	}

	lt := localTag("syncer", "v0.0.0-test")
	img, err := tarball.ImageFromPath(rel.Images["syncer"], &lt)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Config.User != imageUser+":"+imageUser || !slices.Equal(cfg.Config.Entrypoint, []string{"/usr/local/bin/opensandbox-syncer"}) {
		t.Errorf("image runs %v as %q", cfg.Config.Entrypoint, cfg.Config.User)
	}
}

// TestOpenRefusesATamperedTarball: upload re-checks the digest.
func TestOpenRefusesATamperedTarball(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, TarballName("v1"))
	os.WriteFile(p, []byte("tampered"), 0o644)
	os.WriteFile(p+".sha256", []byte(strings.Repeat("0", 64)+"  x\n"), 0o644)
	if _, err := Open(dir, "v1"); err == nil {
		t.Fatal("a tarball that does not match its .sha256 was accepted")
	}
}

func TestFlags(t *testing.T) {
	for _, v := range []string{"", "../x", "v1/2", "-v", "v 1"} {
		if checkVersion(v) == nil {
			t.Errorf("version %q accepted", v)
		}
	}
	var l targetList
	if err := l.Set("us-east-1=osb-use1-releases,1.dkr.ecr.us-east-1.amazonaws.com/osb-use1"); err != nil || l[0].Registry == "" {
		t.Errorf("target: %v %+v", err, l)
	}
	for _, bad := range []string{"us-east-1", "=b", "us-east-1=my.dotted.bucket"} {
		if l.Set(bad) == nil {
			t.Errorf("target %q accepted", bad)
		}
	}
}
