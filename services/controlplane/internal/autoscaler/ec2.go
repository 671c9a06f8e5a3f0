package autoscaler

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
)

// EC2Config configures the EC2 pool.
type EC2Config struct {
	// Groups is the workers' Auto Scaling group (of .metal instances) by
	// region.
	Groups map[string]string
}

// AutoScalingAPI is the part of the Auto Scaling client the pool uses.
type AutoScalingAPI interface {
	DescribeAutoScalingGroups(ctx context.Context, in *autoscaling.DescribeAutoScalingGroupsInput, opts ...func(*autoscaling.Options)) (*autoscaling.DescribeAutoScalingGroupsOutput, error)
	SetDesiredCapacity(ctx context.Context, in *autoscaling.SetDesiredCapacityInput, opts ...func(*autoscaling.Options)) (*autoscaling.SetDesiredCapacityOutput, error)
	SetInstanceProtection(ctx context.Context, in *autoscaling.SetInstanceProtectionInput, opts ...func(*autoscaling.Options)) (*autoscaling.SetInstanceProtectionOutput, error)
	TerminateInstanceInAutoScalingGroup(ctx context.Context, in *autoscaling.TerminateInstanceInAutoScalingGroupInput, opts ...func(*autoscaling.Options)) (*autoscaling.TerminateInstanceInAutoScalingGroupOutput, error)
}

var _ AutoScalingAPI = (*autoscaling.Client)(nil)

// EC2 is a pool over the workers' Auto Scaling group in each region. A
// machine is an instance; its worker is named after the instance ID
// (the Nomad client's name on those hosts). Launch raises the desired
// capacity; busy instances are protected from scale-in, so AWS itself
// never picks one; Terminate lifts the protection of the drained instance
// and terminates exactly it, decrementing the desired capacity.
type EC2 struct {
	log     *slog.Logger
	cfg     EC2Config
	clients map[string]AutoScalingAPI // by region
}

var (
	_ Pool      = (*EC2)(nil)
	_ Protector = (*EC2)(nil)
)

// NewEC2 returns the pool over one client per region.
func NewEC2(log *slog.Logger, cfg EC2Config, clients map[string]AutoScalingAPI) (*EC2, error) {
	for region := range cfg.Groups {
		if clients[region] == nil {
			return nil, fmt.Errorf("ec2 pool: no Auto Scaling client for %s", region)
		}
	}
	return &EC2{log: log, cfg: cfg, clients: clients}, nil
}

// NewEC2FromEnv loads AWS credentials from the default chain (instance
// role, environment, shared files) and makes a client per region; the
// standard AWS_ENDPOINT_URL_AUTO_SCALING points them elsewhere.
func NewEC2FromEnv(ctx context.Context, log *slog.Logger, cfg EC2Config) (*EC2, error) {
	clients := map[string]AutoScalingAPI{}
	for region := range cfg.Groups {
		awsCfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(region))
		if err != nil {
			return nil, fmt.Errorf("aws config for %s: %w", region, err)
		}
		clients[region] = autoscaling.NewFromConfig(awsCfg)
	}
	return NewEC2(log, cfg, clients)
}

// Name is "ec2".
func (e *EC2) Name() string { return "ec2" }

// SupportedRegions are the regions with a group.
func (e *EC2) SupportedRegions() []string {
	out := make([]string, 0, len(e.cfg.Groups))
	for r := range e.cfg.Groups {
		out = append(out, r)
	}
	slices.Sort(out)
	return out
}

func (e *EC2) group(ctx context.Context, region string) (AutoScalingAPI, types.AutoScalingGroup, error) {
	name, ok := e.cfg.Groups[region]
	if !ok {
		return nil, types.AutoScalingGroup{}, fmt.Errorf("ec2 pool: no group in region %q", region)
	}
	cl := e.clients[region]
	out, err := cl.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{name}})
	if err != nil {
		return nil, types.AutoScalingGroup{}, fmt.Errorf("describe group %s: %w", name, err)
	}
	if len(out.AutoScalingGroups) != 1 {
		return nil, types.AutoScalingGroup{}, fmt.Errorf("auto scaling group %s not found in %s", name, region)
	}
	return cl, out.AutoScalingGroups[0], nil
}

// Machines lists the group's instances.
func (e *EC2) Machines(ctx context.Context, region string) ([]Machine, error) {
	_, g, err := e.group(ctx, region)
	if err != nil {
		return nil, err
	}
	out := make([]Machine, 0, len(g.Instances))
	for _, in := range g.Instances {
		id := aws.ToString(in.InstanceId)
		m := Machine{ID: id, Region: region, WorkerID: id, State: StateRunning, Protected: aws.ToBool(in.ProtectedFromScaleIn)}
		switch in.LifecycleState {
		case types.LifecycleStateInService:
		case types.LifecycleStatePending, types.LifecycleStatePendingWait, types.LifecycleStatePendingProceed:
			m.State = StatePending
		case types.LifecycleStateStandby, types.LifecycleStateEnteringStandby, types.LifecycleStateDetaching, types.LifecycleStateDetached:
			m.State = StateStopped
		default: // terminating, terminated, warm pool states
			m.State = StateTerminating
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Machine) int { return cmpString(a.ID, b.ID) })
	return out, nil
}

// Launch raises the group's desired capacity by one (up to its maximum).
func (e *EC2) Launch(ctx context.Context, region string) (Machine, error) {
	cl, g, err := e.group(ctx, region)
	if err != nil {
		return Machine{}, err
	}
	desired := aws.ToInt32(g.DesiredCapacity)
	if desired >= aws.ToInt32(g.MaxSize) {
		return Machine{}, fmt.Errorf("group %s at its maximum %d: %w", aws.ToString(g.AutoScalingGroupName), desired, ErrNoMachine)
	}
	if _, err := cl.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{
		AutoScalingGroupName: g.AutoScalingGroupName, DesiredCapacity: aws.Int32(desired + 1), HonorCooldown: aws.Bool(false),
	}); err != nil {
		return Machine{}, fmt.Errorf("set desired capacity of %s: %w", aws.ToString(g.AutoScalingGroupName), err)
	}
	return Machine{ID: fmt.Sprintf("%s#%d", aws.ToString(g.AutoScalingGroupName), desired+1), Region: region, State: StatePending}, nil
}

// Drain does nothing in AWS: the instance stays protected while busy and
// the scaler drains its worker.
func (e *EC2) Drain(context.Context, Machine) error { return nil }

// Protect sets the instance's scale-in protection.
func (e *EC2) Protect(ctx context.Context, m Machine, on bool) error {
	name, ok := e.cfg.Groups[m.Region]
	if !ok {
		return fmt.Errorf("ec2 pool: no group in region %q", m.Region)
	}
	_, err := e.clients[m.Region].SetInstanceProtection(ctx, &autoscaling.SetInstanceProtectionInput{
		AutoScalingGroupName: aws.String(name), InstanceIds: []string{m.ID}, ProtectedFromScaleIn: aws.Bool(on),
	})
	if err != nil {
		return fmt.Errorf("scale-in protection of %s: %w", m.ID, err)
	}
	return nil
}

// Terminate lifts the instance's protection and terminates it, lowering
// the desired capacity so that AWS does not replace it.
func (e *EC2) Terminate(ctx context.Context, m Machine) error {
	if m.Protected {
		if err := e.Protect(ctx, m, false); err != nil {
			return err
		}
	}
	_, err := e.clients[m.Region].TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
		InstanceId: aws.String(m.ID), ShouldDecrementDesiredCapacity: aws.Bool(true),
	})
	if err != nil {
		return fmt.Errorf("terminate %s: %w", m.ID, err)
	}
	e.log.Info("ec2 pool: instance terminated", "instance_id", m.ID, "region", m.Region)
	return nil
}
