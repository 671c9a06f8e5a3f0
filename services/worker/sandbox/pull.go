package sandbox

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/errs"
	"github.com/opensandbox/opensandbox/services/worker/runtime"
)

// puller fetches the images that templates name by reference, one pull per
// image at a time however many creates wait for it.
type puller struct {
	log     *slog.Logger
	rt      runtime.Runtime
	cfg     Config
	metrics *Metrics

	mu       sync.Mutex
	inflight map[string]*pullCall
}

type pullCall struct {
	done chan struct{}
	err  error
}

func newPuller(log *slog.Logger, rt runtime.Runtime, cfg Config, m *Metrics) *puller {
	return &puller{log: log, rt: rt, cfg: cfg, metrics: m, inflight: map[string]*pullCall{}}
}

// registryOf returns the registry host of an image reference.
func registryOf(ref string) string {
	first, _, found := strings.Cut(ref, "/")
	if found && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return first
	}
	return "docker.io"
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// pull fetches ref unless the configuration forbids its registry.
func (p *puller) pull(ctx context.Context, ref string) error {
	reg := registryOf(ref)
	if len(p.cfg.PullRegistries) > 0 && !contains(p.cfg.PullRegistries, reg) {
		return errs.New(errs.KindInvalid, "template_not_found", "image %s is not on this worker and registry %s is not allowed (OPENSANDBOX_PULL_REGISTRIES)", ref, reg)
	}
	p.mu.Lock()
	call, inflight := p.inflight[ref]
	if !inflight {
		call = &pullCall{done: make(chan struct{})}
		p.inflight[ref] = call
		// The pull runs on its own, bounded by PullTimeout: every caller,
		// the first one too, may give up without stopping it for the others.
		go func() {
			call.err = p.do(context.WithoutCancel(ctx), ref, reg)
			p.mu.Lock()
			delete(p.inflight, ref)
			p.mu.Unlock()
			close(call.done)
		}()
	}
	p.mu.Unlock()
	select {
	case <-call.done:
		return call.err
	case <-ctx.Done():
		return errs.New(errs.KindTimeout, "canceled", "request canceled while image %s was being pulled", ref).WithCause(ctx.Err())
	}
}

func (p *puller) do(ctx context.Context, ref, reg string) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.PullTimeout)
	defer cancel()
	start := time.Now()
	p.log.Info("pulling image", "image", ref)
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
	err := p.rt.Pull(ctx, ref, contains(p.cfg.InsecureRegistries, reg), pw)
	pw.Close()
	<-logged
	p.metrics.ImagePulls.WithLabelValues(pullResult(err)).Inc()
	p.metrics.ImagePullDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		p.log.Warn("image pull failed", "image", ref, "err", err)
		return errs.New(errs.KindInvalid, "template_not_found", "image %s could not be pulled", ref).WithCause(err)
	}
	p.log.Info("image pulled", "image", ref, "duration_ms", time.Since(start).Milliseconds())
	return nil
}

func pullResult(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}
