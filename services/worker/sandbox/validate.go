package sandbox

import (
	"crypto/rand"
	"regexp"
	"strings"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/shared/errs"
)

var (
	envKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	idChars  = "abcdefghijklmnopqrstuvwxyz0123456789"
)

func newID() string {
	b := make([]byte, 16)
	rand.Read(b)
	for i := range b {
		b[i] = idChars[int(b[i])%len(idChars)]
	}
	return string(b)
}

// resolved is a validated create request.
type resolved struct {
	template string
	image    string
	pullable bool // an image reference rather than a named template
	timeout  time.Duration
	cpus     int
	memMB    int
	diskMB   int
}

// imageOf is the image of a template: a named template's, or the template
// itself, normalized, when it is an image reference (pullable).
func (m *Manager) imageOf(template string) (image string, pullable bool, err error) {
	if img, ok := m.cfg.Templates[template]; ok {
		return img, false, nil
	}
	if !strings.ContainsAny(template, "/:") {
		return "", false, errs.New(errs.KindInvalid, "template_not_found", "unknown template %q", template)
	}
	if image, err = normalizeImage(template); err != nil {
		return "", false, errs.New(errs.KindInvalid, "template_not_found", "template %q is not a valid image reference", template)
	}
	return image, true, nil
}

func (m *Manager) validate(cfg api.SandboxConfig) (resolved, error) {
	r := resolved{template: cfg.TemplateName()}
	if r.template == "" {
		r.template = m.cfg.DefaultTemplate
	}
	var err error
	if r.image, r.pullable, err = m.imageOf(r.template); err != nil {
		return r, err
	}

	switch {
	case cfg.Timeout < 0:
		return r, errs.Invalid("timeout must be positive")
	case cfg.Timeout == 0:
		r.timeout = m.cfg.DefaultTimeout
	default:
		r.timeout = time.Duration(cfg.Timeout) * time.Second
	}
	if r.timeout > m.cfg.MaxTimeout {
		return r, errs.Invalid("timeout %ds is over the maximum of %ds", cfg.Timeout, int(m.cfg.MaxTimeout.Seconds()))
	}
	r.cpus = cfg.CPUCount
	if r.cpus == 0 {
		r.cpus = m.cfg.DefaultCPUs
	}
	if r.cpus < 0 || r.cpus > m.cfg.MaxCPUs {
		return r, errs.Invalid("cpuCount must be between 1 and %d", m.cfg.MaxCPUs)
	}
	r.memMB = cfg.MemoryMB
	if r.memMB == 0 {
		r.memMB = m.cfg.DefaultMemMB
	}
	if r.memMB < m.cfg.MinMemMB || r.memMB > m.cfg.MaxMemMB {
		return r, errs.Invalid("memoryMB must be between %d and %d", m.cfg.MinMemMB, m.cfg.MaxMemMB)
	}
	r.diskMB = cfg.DiskMB
	if r.diskMB == 0 {
		r.diskMB = m.cfg.DefaultDiskMB
	}
	if r.diskMB < m.cfg.MinDiskMB || r.diskMB > m.cfg.MaxDiskMB {
		return r, errs.Invalid("diskMB must be between %d and %d", m.cfg.MinDiskMB, m.cfg.MaxDiskMB)
	}
	for k := range cfg.Envs {
		if !envKeyRE.MatchString(k) {
			return r, errs.Invalid("invalid environment variable name %q", k)
		}
	}
	if len(cfg.Metadata) > 64 {
		return r, errs.Invalid("at most 64 metadata entries")
	}
	for k, v := range cfg.Metadata {
		if k == "" || len(k) > 256 || len(v) > 4096 {
			return r, errs.Invalid("metadata keys must be 1..256 bytes and values at most 4096 bytes")
		}
	}
	if len(cfg.Alias) > 256 {
		return r, errs.Invalid("alias is longer than 256 bytes")
	}
	return r, nil
}
