package autoscaler

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	nomad "github.com/hashicorp/nomad/api"
)

// StateStopped is a Nomad node kept in the cluster without a worker (its
// eligibility off, drained): spare capacity Launch turns on again.
const StateStopped = "stopped"

// NomadConfig configures the Nomad pool.
type NomadConfig struct {
	Regions   []string // a region is a Nomad region (the AWS region, the Consul datacenter)
	NodeClass string   // the worker nodes' node_class
	Job       string   // the worker job
	// Group, when set, is the worker job's task group: workers are then a
	// service job scaled by count (one per node by a distinct_hosts
	// constraint) rather than a system job on every eligible node.
	Group string
	// DrainDeadline bounds the Nomad node drain that stops the worker task
	// once it runs no sandbox; it covers the worker's shutdown budget.
	DrainDeadline time.Duration
}

// Nomad is a pool of Nomad client nodes of the worker node class. With
// workers as a system job (the default job file), a machine is a node:
// Launch makes a spare (ineligible) node eligible, so Nomad places a worker
// there; Drain makes it ineligible; Terminate drains the node, which stops
// the worker task. With workers as a service job, Launch and Terminate also
// change the group's count. Nomad cannot create hosts: pair it with the EC2
// pool (or an operator) for hosts themselves.
type Nomad struct {
	log    *slog.Logger
	client *nomad.Client
	cfg    NomadConfig
}

var _ Pool = (*Nomad)(nil)

// NewNomad returns a Nomad pool over client.
func NewNomad(log *slog.Logger, client *nomad.Client, cfg NomadConfig) (*Nomad, error) {
	if cfg.NodeClass == "" || cfg.Job == "" || len(cfg.Regions) == 0 {
		return nil, fmt.Errorf("nomad pool: node class, job and regions are required")
	}
	if cfg.DrainDeadline <= 0 {
		cfg.DrainDeadline = time.Minute
	}
	return &Nomad{log: log, client: client, cfg: cfg}, nil
}

// NewNomadFromEnv connects with NOMAD_ADDR, NOMAD_TOKEN and the other
// standard NOMAD_* variables.
func NewNomadFromEnv(log *slog.Logger, cfg NomadConfig) (*Nomad, error) {
	client, err := nomad.NewClient(nomad.DefaultConfig())
	if err != nil {
		return nil, fmt.Errorf("nomad: %w", err)
	}
	return NewNomad(log, client, cfg)
}

// Name is "nomad".
func (n *Nomad) Name() string { return "nomad" }

// SupportedRegions are the configured datacenters.
func (n *Nomad) SupportedRegions() []string { return slices.Clone(n.cfg.Regions) }

func (n *Nomad) nodes(ctx context.Context, region string) ([]*nomad.NodeListStub, error) {
	q := (&nomad.QueryOptions{Region: region, Filter: fmt.Sprintf(`NodeClass == %q`, n.cfg.NodeClass)}).WithContext(ctx)
	nodes, _, err := n.client.Nodes().List(q)
	if err != nil {
		return nil, fmt.Errorf("nomad: list nodes: %w", err)
	}
	out := nodes[:0]
	for _, nd := range nodes {
		if nd.NodeClass == n.cfg.NodeClass && nd.Status != "down" {
			out = append(out, nd)
		}
	}
	slices.SortFunc(out, func(a, b *nomad.NodeListStub) int { return cmpString(a.Name, b.Name) })
	return out, nil
}

// Machines lists the worker-class nodes of the region; the worker on a node
// is named after it (Ansible names each Nomad client after its EC2
// instance, the worker's id).
func (n *Nomad) Machines(ctx context.Context, region string) ([]Machine, error) {
	nodes, err := n.nodes(ctx, region)
	if err != nil {
		return nil, err
	}
	out := make([]Machine, 0, len(nodes))
	for _, nd := range nodes {
		m := Machine{ID: nd.ID, Region: region, WorkerID: nd.Name, State: StateRunning}
		switch {
		case nd.Status == "initializing":
			m.State = StatePending
		case nd.Drain:
			m.State = StateTerminating
		case nd.SchedulingEligibility == nomad.NodeSchedulingIneligible:
			m.State = StateStopped
		}
		out = append(out, m)
	}
	return out, nil
}

// Launch turns a spare node on (system job), or adds one to the group's
// count (service job).
func (n *Nomad) Launch(ctx context.Context, region string) (Machine, error) {
	wq := (&nomad.WriteOptions{Region: region}).WithContext(ctx)
	if n.cfg.Group != "" {
		count, err := n.count(ctx, region)
		if err != nil {
			return Machine{}, err
		}
		count++
		if _, _, err := n.client.Jobs().Scale(n.cfg.Job, n.cfg.Group, &count, "opensandbox autoscaler: scale up", false, nil, wq); err != nil {
			return Machine{}, fmt.Errorf("nomad: scale %s/%s to %d: %w", n.cfg.Job, n.cfg.Group, count, err)
		}
		return Machine{ID: fmt.Sprintf("%s/%s#%d", n.cfg.Job, n.cfg.Group, count), Region: region, State: StatePending}, nil
	}
	nodes, err := n.nodes(ctx, region)
	if err != nil {
		return Machine{}, err
	}
	for _, nd := range nodes {
		if nd.Status == "ready" && !nd.Drain && nd.SchedulingEligibility == nomad.NodeSchedulingIneligible {
			if _, err := n.client.Nodes().ToggleEligibility(nd.ID, true, wq); err != nil {
				return Machine{}, fmt.Errorf("nomad: node %s eligible: %w", nd.Name, err)
			}
			return Machine{ID: nd.ID, Region: region, WorkerID: nd.Name, State: StatePending}, nil
		}
	}
	return Machine{}, fmt.Errorf("nomad datacenter %s: %w (no spare %s node; add hosts)", region, ErrNoMachine, n.cfg.NodeClass)
}

func (n *Nomad) count(ctx context.Context, region string) (int, error) {
	job, _, err := n.client.Jobs().Info(n.cfg.Job, (&nomad.QueryOptions{Region: region}).WithContext(ctx))
	if err != nil {
		return 0, fmt.Errorf("nomad: job %s: %w", n.cfg.Job, err)
	}
	for _, tg := range job.TaskGroups {
		if tg.Name != nil && *tg.Name == n.cfg.Group && tg.Count != nil {
			return *tg.Count, nil
		}
	}
	return 0, fmt.Errorf("nomad: job %s has no group %s", n.cfg.Job, n.cfg.Group)
}

// Drain makes the node ineligible: Nomad places nothing new on it.
func (n *Nomad) Drain(ctx context.Context, m Machine) error {
	if _, err := n.client.Nodes().ToggleEligibility(m.ID, false, (&nomad.WriteOptions{Region: m.Region}).WithContext(ctx)); err != nil {
		return fmt.Errorf("nomad: node %s ineligible: %w", m.ID, err)
	}
	return nil
}

// Terminate drains the node, which stops its worker task (system jobs
// included); for a service job the group's count then drops by one, so the
// allocation leaving the drained node is the one Nomad stops.
func (n *Nomad) Terminate(ctx context.Context, m Machine) error {
	wq := (&nomad.WriteOptions{Region: m.Region}).WithContext(ctx)
	spec := &nomad.DrainOptions{DrainSpec: &nomad.DrainSpec{Deadline: n.cfg.DrainDeadline}, Meta: map[string]string{"by": "opensandbox-autoscaler"}}
	if _, err := n.client.Nodes().UpdateDrainOpts(m.ID, spec, wq); err != nil {
		return fmt.Errorf("nomad: drain node %s: %w", m.ID, err)
	}
	if n.cfg.Group == "" {
		return nil
	}
	count, err := n.count(ctx, m.Region)
	if err != nil {
		return err
	}
	count = max(count-1, 0)
	if _, _, err := n.client.Jobs().Scale(n.cfg.Job, n.cfg.Group, &count, "opensandbox autoscaler: scale in", false, nil, wq); err != nil {
		return fmt.Errorf("nomad: scale %s/%s to %d: %w", n.cfg.Job, n.cfg.Group, count, err)
	}
	return nil
}
