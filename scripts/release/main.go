// Command release builds an OpenSandbox release and uploads it to the
// regions that run it (make release VERSION=v0.1.0).
//
//	release build  -version v0.1.0 -out dist
//	release upload -version v0.1.0 -dist dist -target us-east-1=osb-use1-releases-123456789012,123456789012.dkr.ecr.us-east-1.amazonaws.com/osb-use1
//
// build compiles the static binaries (CGO off, the repository's build tags),
// packs them into opensandbox_<version>_linux_amd64.tar.gz with its SHA-256
// beside it, and builds the control plane's and the syncer's container
// images (static binary, CA bundle, an unprivileged user; no base image to
// pull). upload puts the tarball and its checksum into each region's release
// bucket under releases/<version>/ with S3 verifying the SHA-256, and pushes
// the images to that region's ECR repositories. It prints what the Nomad
// jobs pin: release_version, release_sha256 and the image digests.
//
// It is its own module so that the services do not carry the AWS SDK and
// the registry client for a build tool.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: release build|upload [flags]")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	version := fs.String("version", "", "release version, e.g. v0.1.0")
	switch args[0] {
	case "build":
		outDir := fs.String("out", "dist", "output directory")
		root := fs.String("root", ".", "repository root (holds go.work)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if err := checkVersion(*version); err != nil {
			return err
		}
		rel, err := Build(ctx, log, BuildOptions{Root: *root, Out: *outDir, Version: *version})
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "release_version=%s\nrelease_sha256=%s\n", rel.Version, rel.SHA256)
		return nil
	case "upload":
		dist := fs.String("dist", "dist", "directory `release build` wrote")
		var targets targetList
		fs.Var(&targets, "target", "region=bucket[,registry]; repeat per region (registry: <account>.dkr.ecr.<region>.amazonaws.com/<cluster>)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if err := checkVersion(*version); err != nil {
			return err
		}
		if len(targets) == 0 {
			return errors.New("upload needs at least one -target")
		}
		rel, err := Open(*dist, *version)
		if err != nil {
			return err
		}
		for _, t := range targets {
			up, err := NewAWSUploader(ctx, t.Region)
			if err != nil {
				return err
			}
			res, err := up.Upload(ctx, log, rel, t)
			if err != nil {
				return fmt.Errorf("%s: %w", t.Region, err)
			}
			fmt.Fprintf(out, "%s: release_version=%s release_sha256=%s release_bucket=%s", t.Region, rel.Version, rel.SHA256, t.Bucket)
			for name, ref := range res.Images {
				fmt.Fprintf(out, " %s_image=%s", name, ref)
			}
			fmt.Fprintln(out)
		}
		return nil
	default:
		return fmt.Errorf("unknown command %q (build or upload)", args[0])
	}
}

// checkVersion keeps versions to what is safe in an S3 key, an image tag
// and a file name.
func checkVersion(v string) error {
	if v == "" || len(v) > 64 || strings.Trim(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") != "" || v[0] == '.' || v[0] == '-' {
		return fmt.Errorf("version %q: want letters, digits, '.', '-', '_' (e.g. v0.1.0)", v)
	}
	return nil
}

// Target is one region's destination.
type Target struct {
	Region   string
	Bucket   string
	Registry string // empty: no images for this region
}

type targetList []Target

func (l *targetList) String() string { return fmt.Sprint(*l) }

func (l *targetList) Set(s string) error {
	region, rest, ok := strings.Cut(s, "=")
	if !ok || region == "" || rest == "" {
		return fmt.Errorf("target %q: want region=bucket[,registry]", s)
	}
	bucket, registry, _ := strings.Cut(rest, ",")
	if strings.Contains(bucket, ".") {
		// Nomad's artifact URLs are virtual-hosted (bucket.s3.region...);
		// a dotted bucket name would be split into host labels.
		return fmt.Errorf("target %q: bucket names with dots break virtual-hosted S3 URLs", s)
	}
	*l = append(*l, Target{Region: region, Bucket: bucket, Registry: registry})
	return nil
}
