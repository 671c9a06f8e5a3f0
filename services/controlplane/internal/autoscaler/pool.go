// Package autoscaler keeps each region's worker capacity right: above the
// high-water mark of utilisation (running sandboxes / capacity of the
// workers not draining) for a sustained time it launches a machine; below
// the low-water mark it drains the least-loaded one (no new placements),
// waits until its sandboxes end or a drain deadline, and only then removes
// it. One scaler acts per region (leader election); machines come from a
// Pool: local worker processes, Nomad, or an EC2 Auto Scaling group.
package autoscaler

import (
	"context"
	"errors"
)

// Machine states as the scaler sees them.
const (
	StatePending     = "pending"     // launched, its worker not serving yet
	StateRunning     = "running"     // serving
	StateDraining    = "draining"    // taking no new sandboxes
	StateTerminating = "terminating" // on its way out
)

// Machine is one host (or process) running one worker.
type Machine struct {
	ID        string `json:"id"`       // the pool's name for it (process, Nomad node, EC2 instance)
	Region    string `json:"region"`   //
	WorkerID  string `json:"workerID"` // the worker it runs, as registered
	State     string `json:"state"`
	Protected bool   `json:"protected,omitempty"` // scale-in protection (EC2)
}

// Pool is where machines come from.
type Pool interface {
	// Name is the pool's kind (local, nomad, ec2).
	Name() string
	SupportedRegions() []string
	Machines(ctx context.Context, region string) ([]Machine, error)
	// Launch adds one machine in region.
	Launch(ctx context.Context, region string) (Machine, error)
	// Drain stops the pool itself from giving m new work (Nomad: the node
	// turns ineligible); the scaler drains the worker.
	Drain(ctx context.Context, m Machine) error
	// Terminate removes m; called once its worker runs no sandbox (or the
	// drain deadline passed).
	Terminate(ctx context.Context, m Machine) error
}

// Protector is a pool that can protect busy machines from being picked by
// the pool's own scale-in (EC2's instance scale-in protection).
type Protector interface {
	Protect(ctx context.Context, m Machine, on bool) error
}

// ErrNoMachine is returned by Launch when the pool has nothing to add.
var ErrNoMachine = errors.New("the pool has no machine to add")
