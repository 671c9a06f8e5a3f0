package autoscaler

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
)

const asgNS = "http://autoscaling.amazonaws.com/doc/2011-01-01/"

type fakeInstance struct {
	id        string
	state     string
	protected bool
}

// fakeAutoScaling speaks the EC2 Auto Scaling query API (form-encoded
// POST, Action and Version=2011-01-01, XML answers) for the actions the
// pool uses, on one group, and records each call with its parameters.
type fakeAutoScaling struct {
	mu        sync.Mutex
	group     string
	desired   int
	max       int
	instances []*fakeInstance
	calls     []string
}

func (f *fakeAutoScaling) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := r.ParseForm(); err != nil || r.Method != http.MethodPost || r.Form.Get("Version") != "2011-01-01" {
		f.fail(w, "InvalidAction", "want a form POST with Version=2011-01-01")
		return
	}
	if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 Credential=AKIDTEST/") {
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintf(w, `<ErrorResponse xmlns="%s"><Error><Type>Sender</Type><Code>InvalidClientTokenId</Code><Message>bad key</Message></Error><RequestId>r</RequestId></ErrorResponse>`, asgNS)
		return
	}
	action := r.Form.Get("Action")
	switch action {
	case "DescribeAutoScalingGroups":
		if r.Form.Get("AutoScalingGroupNames.member.1") != f.group {
			f.fail(w, "ValidationError", "unknown group")
			return
		}
		f.calls = append(f.calls, action+" "+f.group)
		var inst strings.Builder
		for _, in := range f.instances {
			fmt.Fprintf(&inst, `<member><InstanceId>%s</InstanceId><InstanceType>c7i.metal-24xl</InstanceType><AvailabilityZone>us-east-1a</AvailabilityZone><LifecycleState>%s</LifecycleState><HealthStatus>Healthy</HealthStatus><ProtectedFromScaleIn>%v</ProtectedFromScaleIn></member>`,
				in.id, in.state, in.protected)
		}
		fmt.Fprintf(w, `<DescribeAutoScalingGroupsResponse xmlns="%s"><DescribeAutoScalingGroupsResult><AutoScalingGroups><member>`+
			`<AutoScalingGroupName>%s</AutoScalingGroupName><MinSize>1</MinSize><MaxSize>%d</MaxSize><DesiredCapacity>%d</DesiredCapacity>`+
			`<DefaultCooldown>300</DefaultCooldown><AvailabilityZones><member>us-east-1a</member></AvailabilityZones><HealthCheckType>EC2</HealthCheckType>`+
			`<CreatedTime>2026-01-01T00:00:00Z</CreatedTime><Instances>%s</Instances></member></AutoScalingGroups></DescribeAutoScalingGroupsResult>`+
			`<ResponseMetadata><RequestId>r1</RequestId></ResponseMetadata></DescribeAutoScalingGroupsResponse>`, asgNS, f.group, f.max, f.desired, inst.String())
	case "SetDesiredCapacity":
		f.calls = append(f.calls, fmt.Sprintf("%s %s desired=%s honorCooldown=%s", action, r.Form.Get("AutoScalingGroupName"), r.Form.Get("DesiredCapacity"), r.Form.Get("HonorCooldown")))
		fmt.Sscan(r.Form.Get("DesiredCapacity"), &f.desired)
		f.instances = append(f.instances, &fakeInstance{id: fmt.Sprintf("i-new%d", f.desired), state: "Pending"})
		fmt.Fprintf(w, `<SetDesiredCapacityResponse xmlns="%s"><ResponseMetadata><RequestId>r2</RequestId></ResponseMetadata></SetDesiredCapacityResponse>`, asgNS)
	case "SetInstanceProtection":
		id := r.Form.Get("InstanceIds.member.1")
		f.calls = append(f.calls, fmt.Sprintf("%s %s %s protected=%s", action, r.Form.Get("AutoScalingGroupName"), id, r.Form.Get("ProtectedFromScaleIn")))
		for _, in := range f.instances {
			if in.id == id {
				in.protected = r.Form.Get("ProtectedFromScaleIn") == "true"
			}
		}
		fmt.Fprintf(w, `<SetInstanceProtectionResponse xmlns="%s"><SetInstanceProtectionResult/><ResponseMetadata><RequestId>r3</RequestId></ResponseMetadata></SetInstanceProtectionResponse>`, asgNS)
	case "TerminateInstanceInAutoScalingGroup":
		id := r.Form.Get("InstanceId")
		f.calls = append(f.calls, fmt.Sprintf("%s %s decrement=%s", action, id, r.Form.Get("ShouldDecrementDesiredCapacity")))
		for i, in := range f.instances {
			if in.id == id {
				if in.protected {
					f.fail(w, "ValidationError", "instance is protected")
					return
				}
				f.instances = append(f.instances[:i], f.instances[i+1:]...)
				f.desired--
				break
			}
		}
		fmt.Fprintf(w, `<TerminateInstanceInAutoScalingGroupResponse xmlns="%s"><TerminateInstanceInAutoScalingGroupResult><Activity>`+
			`<ActivityId>a1</ActivityId><AutoScalingGroupName>%s</AutoScalingGroupName><Cause>terminated</Cause><StartTime>2026-01-01T00:00:00Z</StartTime>`+
			`<StatusCode>InProgress</StatusCode><Progress>0</Progress></Activity></TerminateInstanceInAutoScalingGroupResult>`+
			`<ResponseMetadata><RequestId>r4</RequestId></ResponseMetadata></TerminateInstanceInAutoScalingGroupResponse>`, asgNS, f.group)
	default:
		f.fail(w, "InvalidAction", "not part of the contract: "+action)
	}
}

func (f *fakeAutoScaling) fail(w http.ResponseWriter, code, msg string) {
	w.WriteHeader(http.StatusBadRequest)
	fmt.Fprintf(w, `<ErrorResponse xmlns="%s"><Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>rx</RequestId></ErrorResponse>`, asgNS, code, msg)
}

// Contract test: the scaler over the EC2 pool, against the Auto Scaling
// query API with the AWS SDK pointed at it: scale-up raises the desired
// capacity; busy instances get scale-in protection (idle ones lose it);
// scale-in drains the least-loaded instance's worker, waits, then lifts
// its protection and terminates exactly it with a decrement. The calls and
// their order are asserted.
func TestEC2ContractScaleUpProtectDrainScaleIn(t *testing.T) {
	f := &fakeAutoScaling{group: "osb-workers-use1", desired: 2, max: 4, instances: []*fakeInstance{
		{id: "i-a", state: "InService"}, {id: "i-b", state: "InService"},
	}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	client := autoscaling.New(autoscaling.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(srv.URL),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
	})
	pool, err := NewEC2(quiet, EC2Config{Groups: map[string]string{"us-east-1": f.group}}, map[string]AutoScalingAPI{"us-east-1": client})
	if err != nil {
		t.Fatal(err)
	}
	fl := &fleet{current: map[string]int{"i-a": 8, "i-b": 6}, draining: map[string]bool{}}
	s, _ := New(quiet, Config{Sustain: time.Nanosecond, UpCooldown: time.Nanosecond, DownCooldown: time.Nanosecond, Min: 1, Max: 4, DrainDeadline: time.Hour},
		pool, fl, fl, always(true), nil)
	now := time.Unix(1_000_000, 0)
	s.now = func() time.Time { return now }
	ctx := context.Background()
	step := func(want string) Decision {
		t.Helper()
		now = now.Add(time.Second)
		d := s.Step(ctx, "us-east-1")
		if d.Direction != want {
			t.Fatalf("decision %+v, want %s", d, want)
		}
		return d
	}

	step("none") // 14/20 = 70 %: above the mark, not yet for long; busy instances protected
	step("up")
	f.mu.Lock()
	f.instances[2].state = "InService" // the new instance booted and its worker serves
	f.mu.Unlock()
	fl.set("i-new3", 3)
	fl.set("i-a", 2)
	fl.set("i-b", 1) // 6/30 = 20 %: the least-loaded i-b drains, still running a sandbox
	if d := step("drain"); d.Machine != "i-b" || !fl.draining["i-b"] {
		t.Fatalf("drained %+v", d)
	}
	step("none") // its sandbox still runs: the instance stays, protected
	fl.set("i-b", 0)
	step("none") // idle: protection lifted, removal after a moment
	now = now.Add(2 * time.Second)
	if d := step("terminate"); d.Machine != "i-b" {
		t.Fatalf("terminated %+v", d)
	}
	// Terminating a protected instance lifts its protection first.
	if err := pool.Terminate(ctx, Machine{ID: "i-a", Region: "us-east-1", Protected: true}); err != nil {
		t.Fatal(err)
	}

	describe := "DescribeAutoScalingGroups osb-workers-use1"
	want := []string{
		describe, "SetInstanceProtection osb-workers-use1 i-a protected=true", "SetInstanceProtection osb-workers-use1 i-b protected=true",
		describe, describe, "SetDesiredCapacity osb-workers-use1 desired=3 honorCooldown=false",
		describe, "SetInstanceProtection osb-workers-use1 i-new3 protected=true",
		describe,
		describe, "SetInstanceProtection osb-workers-use1 i-b protected=false",
		describe, "TerminateInstanceInAutoScalingGroup i-b decrement=true",
		"SetInstanceProtection osb-workers-use1 i-a protected=false", "TerminateInstanceInAutoScalingGroup i-a decrement=true",
	}
	f.mu.Lock()
	got := append([]string(nil), f.calls...)
	f.mu.Unlock()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if f.desired != 1 || len(f.instances) != 1 || f.instances[0].id != "i-new3" || !f.instances[0].protected {
		t.Fatalf("group after: desired %d %+v", f.desired, f.instances[0])
	}

	// Wrong credentials: the SDK's error comes back.
	bad := autoscaling.New(autoscaling.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDOTHER", "secret", "")})
	p2, _ := NewEC2(quiet, EC2Config{Groups: map[string]string{"us-east-1": f.group}}, map[string]AutoScalingAPI{"us-east-1": bad})
	if _, err := p2.Machines(ctx, "us-east-1"); err == nil || !strings.Contains(err.Error(), "InvalidClientTokenId") {
		t.Fatalf("with a wrong key: %v", err)
	}
}
