package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/autoscaler"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/registry"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/store"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/workerclient"
	"github.com/opensandbox/opensandbox/services/shared/config"
	"github.com/opensandbox/opensandbox/services/shared/grpcx"
	"github.com/opensandbox/opensandbox/services/shared/proto/workerv1"
	"github.com/prometheus/client_golang/prometheus"
)

// AutoscalerConfig selects and tunes the autoscaler (server mode).
type AutoscalerConfig struct {
	Pool    string   // "" (off), local, nomad or ec2: OPENSANDBOX_AUTOSCALER
	Regions []string // regions scaled (local and nomad pools; ec2 takes its groups')
	Scaler  autoscaler.Config

	// Local pool.
	LocalBinary string
	LocalDir    string
	LocalEnv    []string // set by tests; else this process's environment
	// Nomad pool (NOMAD_ADDR, NOMAD_TOKEN and the other NOMAD_* for the client).
	NomadNodeClass string
	NomadJob       string
	NomadGroup     string // set when workers are a service job scaled by count
	// EC2 pool: the workers' Auto Scaling group per region.
	EC2Groups map[string]string
}

// loadAutoscalerConfig reads OPENSANDBOX_AUTOSCALER*.
func loadAutoscalerConfig(e *config.Env, defaultRegion string) AutoscalerConfig {
	exe, _ := os.Executable()
	c := AutoscalerConfig{
		Pool:    e.String("OPENSANDBOX_AUTOSCALER", ""),
		Regions: e.List("OPENSANDBOX_AUTOSCALER_REGIONS"),
		Scaler: autoscaler.Config{
			Interval:      e.Duration("OPENSANDBOX_AUTOSCALER_INTERVAL", 10*time.Second),
			High:          float64(e.Int("OPENSANDBOX_AUTOSCALER_HIGH_PCT", 70)) / 100,
			Low:           float64(e.Int("OPENSANDBOX_AUTOSCALER_LOW_PCT", 30)) / 100,
			Sustain:       e.Duration("OPENSANDBOX_AUTOSCALER_SUSTAIN", 30*time.Second),
			UpCooldown:    e.Duration("OPENSANDBOX_AUTOSCALER_UP_COOLDOWN", 2*time.Minute),
			DownCooldown:  e.Duration("OPENSANDBOX_AUTOSCALER_DOWN_COOLDOWN", 5*time.Minute),
			Min:           e.Int("OPENSANDBOX_AUTOSCALER_MIN", 1),
			Max:           e.Int("OPENSANDBOX_AUTOSCALER_MAX", 10),
			DrainDeadline: e.Duration("OPENSANDBOX_AUTOSCALER_DRAIN_DEADLINE", 24*time.Hour),
		},
		LocalBinary:    e.String("OPENSANDBOX_LOCAL_WORKER_BINARY", filepath.Join(filepath.Dir(exe), "opensandbox-worker")),
		LocalDir:       e.String("OPENSANDBOX_LOCAL_WORKER_DIR", ".data/workers"),
		NomadNodeClass: e.String("OPENSANDBOX_NOMAD_NODE_CLASS", "worker"),
		NomadJob:       e.String("OPENSANDBOX_NOMAD_JOB", "opensandbox-worker"),
		NomadGroup:     e.String("OPENSANDBOX_NOMAD_GROUP", ""),
		EC2Groups:      map[string]string{},
	}
	for _, kv := range e.List("OPENSANDBOX_EC2_ASGS") {
		region, group, _ := strings.Cut(kv, "=")
		c.EC2Groups[strings.TrimSpace(region)] = strings.TrimSpace(group)
	}
	if len(c.Regions) == 0 {
		c.Regions = []string{defaultRegion}
	}
	return c
}

// Validate checks the autoscaler's settings.
func (c AutoscalerConfig) Validate() error {
	switch c.Pool {
	case "":
		return nil
	case "local", "nomad":
	case "ec2":
		if len(c.EC2Groups) == 0 {
			return errors.New("the ec2 autoscaler pool needs OPENSANDBOX_EC2_ASGS (region=group,...)")
		}
		for r, g := range c.EC2Groups {
			if r == "" || g == "" {
				return errors.New("OPENSANDBOX_EC2_ASGS: want region=group,...")
			}
		}
	default:
		return fmt.Errorf("OPENSANDBOX_AUTOSCALER %q: want local, nomad or ec2 (or unset)", c.Pool)
	}
	return c.Scaler.WithDefaults().Validate()
}

// newPool builds the configured pool.
func newPool(ctx context.Context, log *slog.Logger, c AutoscalerConfig) (autoscaler.Pool, error) {
	switch c.Pool {
	case "local":
		env := c.LocalEnv
		if env == nil {
			env = localWorkerEnv()
		}
		dir, err := filepath.Abs(c.LocalDir)
		if err != nil {
			return nil, err
		}
		return autoscaler.NewLocal(log, autoscaler.LocalConfig{Binary: c.LocalBinary, Regions: c.Regions, Dir: dir, Env: env})
	case "nomad":
		return autoscaler.NewNomadFromEnv(log, autoscaler.NomadConfig{Regions: c.Regions, NodeClass: c.NomadNodeClass, Job: c.NomadJob, Group: c.NomadGroup})
	case "ec2":
		return autoscaler.NewEC2FromEnv(ctx, log, autoscaler.EC2Config{Groups: c.EC2Groups})
	}
	return nil, fmt.Errorf("no autoscaler pool %q", c.Pool)
}

// localWorkerEnv is the local workers' environment: this process's, with
// the worker's NATS credentials (NATS_WORKER_URL, as make infra-up writes
// them) in place of the control plane's.
func localWorkerEnv() []string {
	env := os.Environ()
	if u := os.Getenv("NATS_WORKER_URL"); u != "" {
		env = append(env, "NATS_URL="+u)
	}
	return env
}

// workerControl drains workers and ends their sandboxes over gRPC.
type workerControl struct {
	pool *workerclient.Pool
}

func (wc workerControl) SetDraining(ctx context.Context, w registry.Worker, on bool) (int, error) {
	cl, err := wc.pool.Client(w.GRPCAddr)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := cl.SetDraining(ctx, &workerv1.SetDrainingRequest{Draining: on})
	if err != nil {
		return 0, grpcx.FromStatus(err)
	}
	return int(resp.GetCurrent()), nil
}

func (wc workerControl) DestroyAll(ctx context.Context, w registry.Worker) (int, error) {
	cl, err := wc.pool.Client(w.GRPCAddr)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	list, err := cl.ListSandboxes(ctx, &workerv1.ListSandboxesRequest{})
	if err != nil {
		return 0, grpcx.FromStatus(err)
	}
	n := 0
	for _, sb := range list.GetSandboxes() {
		if _, err := cl.DestroySandbox(ctx, &workerv1.DestroySandboxRequest{SandboxId: sb.GetSandboxId()}); err != nil {
			return n, grpcx.FromStatus(err)
		}
		n++
	}
	return n, nil
}

// startAutoscaler runs the configured autoscaler until ctx ends; nil when
// none is configured.
func startAutoscaler(ctx context.Context, log *slog.Logger, reg prometheus.Registerer, st *store.Store, workers *registry.Registry,
	pool *workerclient.Pool, c AutoscalerConfig) (*autoscaler.Scaler, error) {
	if c.Pool == "" {
		return nil, nil
	}
	p, err := newPool(ctx, log, c)
	if err != nil {
		return nil, err
	}
	leader := autoscaler.NewPGLeader(log, st.Pool().Config().ConnConfig.Copy())
	sc, err := autoscaler.New(log.With("component", "autoscaler"), c.Scaler, p, workers, workerControl{pool: pool}, leader, autoscaler.NewMetrics(reg))
	if err != nil {
		return nil, err
	}
	go func() {
		sc.Run(ctx)
		leader.Close()
		if l, ok := p.(*autoscaler.Local); ok {
			l.Close()
		}
	}()
	log.Info("autoscaler running", "pool", p.Name(), "regions", p.SupportedRegions())
	return sc, nil
}

// autoscalerHandler answers GET /autoscaler (admin scope).
func autoscalerHandler(sc *autoscaler.Scaler) fiber.Handler {
	return func(c *fiber.Ctx) error {
		if sc == nil {
			return c.JSON(fiber.Map{"enabled": false, "regions": []autoscaler.RegionState{}})
		}
		return c.JSON(fiber.Map{"enabled": true, "regions": sc.State()})
	}
}
