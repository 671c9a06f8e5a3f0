package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Binary is one program of the release.
type Binary struct {
	Name, Package string
}

// Binaries are what the tarball holds; the Nomad jobs run them from it.
var Binaries = []Binary{
	{"opensandbox-server", "./services/controlplane"},
	{"opensandbox-worker", "./services/worker"},
	{"opensandbox-syncer", "./services/syncer"},
	{"osb-agent", "./services/agent"},
	{"osb", "./sdks/go/cmd/osb"},
}

// Image is a container image of one binary.
type Image struct {
	Name, Binary string
}

// Images are the control group's services that run as containers.
var Images = []Image{
	{"controlplane", "opensandbox-server"},
	{"syncer", "opensandbox-syncer"},
}

// buildTags are the tags every binary is built with (the Makefile's).
const buildTags = "remote,containers_image_openpgp,exclude_graphdriver_btrfs,exclude_graphdriver_devicemapper"

// imageUser is the unprivileged user the images run as (distroless's
// "nonroot"); the Nomad templates that render files for these images own
// them by it (checked by deploycheck).
const imageUser = "65532"

// caBundle is the host's CA bundle copied into the images (TLS to
// PostgreSQL, NATS, AWS).
var caBundle = "/etc/ssl/certs/ca-certificates.crt"

// BuildOptions say what to build where.
type BuildOptions struct {
	Root, Out, Version string
	Binaries           []Binary // default Binaries
	Images             []Image  // default Images
}

// Release is a built release on disk.
type Release struct {
	Version string
	Tarball string            // path
	SHA256  string            // hex of the tarball
	Images  map[string]string // image name -> path of its tarball (docker save format)
}

// TarballName is the file the Nomad jobs download.
func TarballName(version string) string {
	return "opensandbox_" + version + "_linux_amd64.tar.gz"
}

// Build compiles, packs and checksums a release under o.Out.
func Build(ctx context.Context, log *slog.Logger, o BuildOptions) (*Release, error) {
	if o.Binaries == nil {
		o.Binaries = Binaries
	}
	if o.Images == nil {
		o.Images = Images
	}
	binDir := filepath.Join(o.Out, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return nil, err
	}
	for _, b := range o.Binaries {
		log.Info("building", "binary", b.Name)
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-tags", buildTags,
			"-ldflags", "-s -w -buildid=", "-o", filepath.Join(binDir, b.Name), b.Package)
		cmd.Dir = o.Root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOFLAGS=")
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build %s: %w\n%s", b.Package, err, out)
		}
	}
	rel := &Release{Version: o.Version, Tarball: filepath.Join(o.Out, TarballName(o.Version)), Images: map[string]string{}}
	sum, err := writeTarball(rel.Tarball, binDir, o.Binaries)
	if err != nil {
		return nil, err
	}
	rel.SHA256 = sum
	if err := os.WriteFile(rel.Tarball+".sha256", []byte(sum+"  "+filepath.Base(rel.Tarball)+"\n"), 0o644); err != nil {
		return nil, err
	}
	for _, im := range o.Images {
		img, err := buildImage(filepath.Join(binDir, im.Binary), o.Version)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", im.Name, err)
		}
		p := filepath.Join(o.Out, "image-"+im.Name+".tar")
		if err := tarball.WriteToFile(p, localTag(im.Name, o.Version), img); err != nil {
			return nil, err
		}
		rel.Images[im.Name] = p
		log.Info("image built", "image", im.Name, "file", p)
	}
	log.Info("release built", "version", o.Version, "tarball", rel.Tarball, "sha256", rel.SHA256)
	return rel, nil
}

// writeTarball packs the binaries at the archive's root, reproducibly (fixed
// order, owner and time), and returns its SHA-256.
func writeTarball(path, binDir string, bins []Binary) (string, error) {
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	gz := gzip.NewWriter(io.MultiWriter(f, h))
	tw := tar.NewWriter(gz)
	for _, b := range bins {
		data, err := os.ReadFile(filepath.Join(binDir, b.Name))
		if err != nil {
			return "", err
		}
		if err := addFile(tw, b.Name, 0o755, data); err != nil {
			return "", err
		}
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	if err := gz.Close(); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), f.Close()
}

func addFile(tw *tar.Writer, name string, mode int64, data []byte) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(data)), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}

// buildImage makes a one-layer image: the binary as its entrypoint, the CA
// bundle and a passwd entry for the unprivileged user it runs as.
func buildImage(binary, version string) (v1.Image, error) {
	bin, err := os.ReadFile(binary)
	if err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(caBundle)
	if err != nil {
		return nil, fmt.Errorf("CA bundle for the image: %w (apt-get install ca-certificates)", err)
	}
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	name := filepath.Base(binary)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{
		{"etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:" + imageUser + ":" + imageUser + ":nonroot:/home/nonroot:/sbin/nologin\n")},
		{"etc/group", 0o644, []byte("root:x:0:\nnonroot:x:" + imageUser + ":\n")},
		{"etc/ssl/certs/ca-certificates.crt", 0o644, ca},
		{"usr/local/bin/" + name, 0o755, bin},
	} {
		if err := addFile(tw, f.name, f.mode, f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	l, err := tarball.LayerFromReader(bytes.NewReader(layer.Bytes()))
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture, cfg.Created = "linux", "amd64", v1.Time{Time: time.Unix(0, 0)}
	cfg.Config.User = imageUser + ":" + imageUser
	cfg.Config.Entrypoint = []string{"/usr/local/bin/" + name}
	cfg.Config.Env = []string{"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt", "PATH=/usr/local/bin"}
	cfg.Config.Labels = map[string]string{"org.opencontainers.image.version": version, "org.opencontainers.image.title": name}
	return mutate.ConfigFile(img, cfg)
}

// localTag names an image inside its tarball.
func localTag(image, version string) name.Tag {
	t, err := name.NewTag("opensandbox/" + image + ":" + version)
	if err != nil {
		panic(err) // checkVersion admits only valid tags
	}
	return t
}

// Open finds a release `release build` wrote to dir.
func Open(dir, version string) (*Release, error) {
	rel := &Release{Version: version, Tarball: filepath.Join(dir, TarballName(version)), Images: map[string]string{}}
	b, err := os.ReadFile(rel.Tarball + ".sha256")
	if err != nil {
		return nil, fmt.Errorf("no release %s in %s (run release build): %w", version, dir, err)
	}
	rel.SHA256, _, _ = strings.Cut(strings.TrimSpace(string(b)), " ")
	if got, err := fileSHA256(rel.Tarball); err != nil || got != rel.SHA256 {
		return nil, fmt.Errorf("%s does not match its .sha256 (%v)", rel.Tarball, err)
	}
	for _, im := range Images {
		p := filepath.Join(dir, "image-"+im.Name+".tar")
		if _, err := os.Stat(p); err == nil {
			rel.Images[im.Name] = p
		}
	}
	return rel, nil
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
