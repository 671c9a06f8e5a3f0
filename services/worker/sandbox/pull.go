package sandbox

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/distribution/reference"
	"github.com/opensandbox/opensandbox/services/shared/errs"
	"github.com/opensandbox/opensandbox/services/worker/runtime"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/image"
	"go.podman.io/image/v5/types"
)

// AnyPublicRegistry in PullRegistries allows every registry whose host
// resolves to public addresses only.
const AnyPublicRegistry = "*"

// Refusals of image pulls (403 registry_not_allowed, 413 image_too_large),
// and a pull that failed (404 image_not_found).
func registryNotAllowed(format string, args ...any) *errs.Error {
	return errs.New(errs.KindForbidden, "registry_not_allowed", format, args...)
}

func imageTooLarge(ref string, size, limit int64) *errs.Error {
	return errs.New(errs.KindTooLarge, "image_too_large", "image %s is %d bytes, over this worker's limit of %d bytes (OPENSANDBOX_PULL_MAX_BYTES)", ref, size, limit)
}

// normalizeImage returns the full form of an image reference
// (python:3.12 -> docker.io/library/python:3.12): what is pulled is
// exactly what was checked, whatever short-name search registries.conf
// would do.
func normalizeImage(s string) (string, error) {
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return "", err
	}
	return reference.TagNameOnly(named).String(), nil
}

// registryOf returns the registry (host[:port]) of a normalized reference.
func registryOf(ref string) string {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return ""
	}
	return reference.Domain(named)
}

// puller fetches the images that templates name by reference, for the org
// that names them, one pull per image at a time however many creates wait
// for it. It decides which registries may be pulled from, how large an
// image may be, and which local images an org may start from.
type puller struct {
	log     *slog.Logger
	rt      runtime.Runtime
	cfg     Config
	metrics *Metrics
	pulled  *pulledImages
	builtin map[string]bool // the images of named templates, normalized: local, never pulled
	public  map[string]bool // those and OPENSANDBOX_PUBLIC_IMAGES: every org may start from them

	// Replaceable in tests.
	lookup       func(ctx context.Context, host string) ([]netip.Addr, error)
	registrySize func(ctx context.Context, ref string, insecure bool) (int64, error)

	mu       sync.Mutex
	inflight map[string]*pullCall
}

type pullCall struct {
	done chan struct{}
	err  error
}

func newPuller(log *slog.Logger, rt runtime.Runtime, cfg Config, m *Metrics, pulled *pulledImages) *puller {
	p := &puller{log: log, rt: rt, cfg: cfg, metrics: m, pulled: pulled, builtin: map[string]bool{}, public: map[string]bool{},
		lookup: func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		},
		registrySize: registrySize, inflight: map[string]*pullCall{}}
	for _, img := range cfg.Templates {
		if n, err := normalizeImage(img); err == nil {
			p.builtin[n], p.public[n] = true, true
		}
	}
	for _, img := range cfg.PublicImages {
		if n, err := normalizeImage(img); err == nil {
			p.public[n] = true
		}
	}
	return p
}

// visible reports whether org may start from the local copy of ref: an
// image of a built-in template, one the operator made public, or one this
// org pulled itself. Any other org must pull it (and so be allowed to).
func (p *puller) visible(ref, org string) bool {
	return p.public[ref] || p.pulled.owns(ref, org)
}

// refuse counts and logs a refused pull and returns err.
func (p *puller) refuse(ref, org, reason string, err *errs.Error) error {
	p.metrics.ImagePullRefusals.WithLabelValues(reason).Inc()
	p.log.Warn("image pull refused", "image", ref, "org_id", org, "reason", reason, "err", err.Message)
	return err
}

// allowed checks that reg may be pulled from: named in PullRegistries, or
// "*" is there and the registry's host resolves to public addresses only
// (a registry on a private, loopback or link-local address must be named).
// It returns the refusal's reason and error.
func (p *puller) allowed(ctx context.Context, reg string) (string, *errs.Error) {
	list := p.cfg.PullRegistries
	switch {
	case len(list) == 0:
		return "pulls_disabled", registryNotAllowed("this worker pulls no images (OPENSANDBOX_PULL_REGISTRIES is empty): use a built-in template or an image the operator made public")
	case slices.Contains(list, reg):
		return "", nil
	case !slices.Contains(list, AnyPublicRegistry):
		return "registry_not_allowed", registryNotAllowed("registry %s is not allowed on this worker (OPENSANDBOX_PULL_REGISTRIES)", reg)
	}
	host := reg
	if h, _, err := net.SplitHostPort(reg); err == nil {
		host = h
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := p.lookup(lctx, strings.Trim(host, "[]"))
	if err != nil || len(addrs) == 0 {
		return "unresolvable", registryNotAllowed("registry %s: cannot resolve its address", reg)
	}
	for _, a := range addrs {
		if !publicAddr(a) {
			return "private_address", registryNotAllowed("registry %s resolves to a private, loopback or link-local address (%s); name it in OPENSANDBOX_PULL_REGISTRIES to pull from it", reg, a)
		}
	}
	return "", nil
}

// nonPublic are the IPv4 ranges the egress firewall denies too.
var nonPublic = func() []netip.Prefix {
	var out []netip.Prefix
	for _, c := range runtime.DefaultDeny {
		out = append(out, netip.MustParsePrefix(c))
	}
	return out
}()

// publicAddr reports an address on the public internet.
func publicAddr(a netip.Addr) bool {
	a = a.Unmap()
	if a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() || !a.IsValid() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// pull fetches ref for org (when allowed and not too large) and records org
// as one of its owners.
func (p *puller) pull(ctx context.Context, ref, org string) error {
	reg := registryOf(ref)
	if reason, err := p.allowed(ctx, reg); err != nil {
		return p.refuse(ref, org, reason, err)
	}
	p.mu.Lock()
	call, inflight := p.inflight[ref]
	if !inflight {
		call = &pullCall{done: make(chan struct{})}
		p.inflight[ref] = call
		// The pull runs on its own, bounded by PullTimeout: every caller,
		// the first one too, may give up without stopping it for the others.
		go func() {
			call.err = p.do(context.WithoutCancel(ctx), ref, reg, org)
			p.mu.Lock()
			delete(p.inflight, ref)
			p.mu.Unlock()
			close(call.done)
		}()
	}
	p.mu.Unlock()
	select {
	case <-call.done:
		if call.err != nil {
			return call.err
		}
		// Every org whose create waited for the pull was allowed to make it.
		p.pulled.own(ref, org, time.Now())
		return nil
	case <-ctx.Done():
		return errs.New(errs.KindTimeout, "canceled", "request canceled while image %s was being pulled", ref).WithCause(ctx.Err())
	}
}

func (p *puller) do(ctx context.Context, ref, reg, org string) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.PullTimeout)
	defer cancel()
	insecure := slices.Contains(p.cfg.InsecureRegistries, reg)
	// Too large by the registry's own account (compressed layers): refused
	// before a byte is fetched. The local size is checked after the pull.
	if size, err := p.registrySize(ctx, ref, insecure); err == nil && size > p.cfg.PullMaxBytes {
		return p.refuse(ref, org, "too_large", imageTooLarge(ref, size, p.cfg.PullMaxBytes))
	}
	start := time.Now()
	p.log.Info("pulling image", "image", ref, "org_id", org)
	// Progress goes to the log line by line while the create waits.
	pr, pw := io.Pipe()
	logged := make(chan struct{})
	go func() {
		defer close(logged)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if line := strings.TrimSpace(sc.Text()); line != "" {
				p.log.Info("pull progress", "image", ref, "line", line)
			}
		}
	}()
	err := p.rt.Pull(ctx, ref, insecure, pw)
	pw.Close()
	<-logged
	p.metrics.ImagePulls.WithLabelValues(pullResult(err)).Inc()
	p.metrics.ImagePullDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		p.log.Warn("image pull failed", "image", ref, "err", err)
		return errs.NotFound("image_not_found", "image %s could not be pulled from %s", ref, reg).WithCause(err)
	}
	size, err := p.rt.ImageSize(ctx, ref)
	if err != nil {
		return errs.Internal("measure pulled image", err)
	}
	if size > p.cfg.PullMaxBytes {
		// Nobody starts from it: its owners (if the tag moved to this
		// larger image) must pull again and meet the same limit.
		p.pulled.forget(ref)
		if rerr := p.rt.RemoveImage(context.WithoutCancel(ctx), ref); rerr != nil {
			p.log.Warn("remove an image over the size limit", "image", ref, "err", rerr)
		}
		return p.refuse(ref, org, "too_large", imageTooLarge(ref, size, p.cfg.PullMaxBytes))
	}
	p.log.Info("image pulled", "image", ref, "org_id", org, "bytes", size, "duration_ms", time.Since(start).Milliseconds())
	return nil
}

// registrySize is an image's size by its registry's manifest (compressed
// layers and config) for this host's platform.
func registrySize(ctx context.Context, ref string, insecure bool) (int64, error) {
	r, err := docker.ParseReference("//" + ref)
	if err != nil {
		return 0, err
	}
	sys := &types.SystemContext{DockerInsecureSkipTLSVerify: types.NewOptionalBool(insecure)}
	src, err := r.NewImageSource(ctx, sys)
	if err != nil {
		return 0, err
	}
	defer src.Close()
	img, err := image.FromUnparsedImage(ctx, sys, image.UnparsedInstance(src, nil))
	if err != nil {
		return 0, err
	}
	total := img.ConfigInfo().Size
	for _, l := range img.LayerInfos() {
		if l.Size < 0 {
			return 0, fmt.Errorf("layer %s has no size in the manifest", l.Digest)
		}
		total += l.Size
	}
	return total, nil
}

func pullResult(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}
