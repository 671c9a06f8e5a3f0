package autoscaler

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	nomad "github.com/hashicorp/nomad/api"
)

// fakeNomad speaks the documented Nomad HTTP API endpoints the pool uses:
// GET /v1/nodes, POST /v1/node/:id/eligibility, POST /v1/node/:id/drain,
// GET /v1/job/:id, POST /v1/job/:id/scale (the client sends PUT, which
// Nomad takes for every write).
type fakeNomad struct {
	mu    sync.Mutex
	nodes []map[string]any
	count int
	calls []string
}

func (f *fakeNomad) node(id string) map[string]any {
	for _, n := range f.nodes {
		if n["ID"] == id {
			return n
		}
	}
	return nil
}

func (f *fakeNomad) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Header.Get("X-Nomad-Token") != "nomad-token" {
		http.Error(w, "Permission denied", http.StatusForbidden)
		return
	}
	var body map[string]any
	if r.Body != nil {
		json.NewDecoder(r.Body).Decode(&body)
	}
	p := r.URL.Path
	write := r.Method == http.MethodPut || r.Method == http.MethodPost
	call := r.Method + " " + p
	if r.URL.Query().Get("region") != "dc-eu" {
		http.Error(w, "No path to region", http.StatusInternalServerError)
		return
	}
	w.Header().Set("X-Nomad-Index", "7")
	switch {
	case r.Method == http.MethodGet && p == "/v1/nodes":
		call += "?region=" + r.URL.Query().Get("region") + "&filter=" + r.URL.Query().Get("filter")
		json.NewEncoder(w).Encode(f.nodes)
	case write && strings.HasSuffix(p, "/eligibility") && strings.HasPrefix(p, "/v1/node/"):
		n := f.node(strings.TrimSuffix(strings.TrimPrefix(p, "/v1/node/"), "/eligibility"))
		if n == nil || body["NodeID"] != n["ID"] {
			http.Error(w, "node not found", http.StatusNotFound)
			return
		}
		n["SchedulingEligibility"] = body["Eligibility"]
		call += " " + fmt.Sprint(body["Eligibility"])
		json.NewEncoder(w).Encode(map[string]any{"EvalIDs": []string{}, "NodeModifyIndex": 8})
	case write && strings.HasSuffix(p, "/drain") && strings.HasPrefix(p, "/v1/node/"):
		n := f.node(strings.TrimSuffix(strings.TrimPrefix(p, "/v1/node/"), "/drain"))
		spec, _ := body["DrainSpec"].(map[string]any)
		if n == nil || spec == nil {
			http.Error(w, "bad drain", http.StatusBadRequest)
			return
		}
		n["Drain"], n["SchedulingEligibility"] = true, "ineligible"
		call += fmt.Sprintf(" deadline=%v ignoreSystemJobs=%v", spec["Deadline"], spec["IgnoreSystemJobs"])
		json.NewEncoder(w).Encode(map[string]any{"NodeModifyIndex": 9})
	case r.Method == http.MethodGet && p == "/v1/job/opensandbox-worker":
		json.NewEncoder(w).Encode(map[string]any{"ID": "opensandbox-worker", "Type": "service",
			"TaskGroups": []map[string]any{{"Name": "worker", "Count": f.count}}})
	case write && p == "/v1/job/opensandbox-worker/scale":
		target, _ := body["Target"].(map[string]any)
		if target["Group"] != "worker" || body["Count"] == nil {
			http.Error(w, "bad scale", http.StatusBadRequest)
			return
		}
		f.count = int(body["Count"].(float64))
		call += fmt.Sprintf(" group=%v count=%d", target["Group"], f.count)
		json.NewEncoder(w).Encode(map[string]any{"EvalID": "e1", "JobModifyIndex": 10})
	default:
		http.Error(w, "not part of the contract: "+r.Method+" "+p, http.StatusNotFound)
		return
	}
	f.calls = append(f.calls, call)
}

func nomadPool(t *testing.T, f *fakeNomad, group string) *Nomad {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	cfg := nomad.DefaultConfig()
	cfg.Address, cfg.SecretID = srv.URL, "nomad-token"
	client, err := nomad.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewNomad(quiet, client, NomadConfig{Regions: []string{"dc-eu"}, NodeClass: "opensandbox-worker", Job: "opensandbox-worker", Group: group})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func workerNode(id, name, eligibility string) map[string]any {
	return map[string]any{"ID": id, "Name": name, "Datacenter": "dc-eu", "NodeClass": "opensandbox-worker", "Status": "ready",
		"Drain": false, "SchedulingEligibility": eligibility}
}

// Contract test, system job: scale-up makes a spare node eligible, scale-in
// makes the node ineligible, then drains it; the exact calls in order.
func TestNomadContractSystemJob(t *testing.T) {
	f := &fakeNomad{nodes: []map[string]any{
		workerNode("n1", "host-1", "eligible"), workerNode("n2", "host-2", "ineligible"),
		{"ID": "n3", "Name": "other", "Datacenter": "dc-eu", "NodeClass": "control", "Status": "ready", "SchedulingEligibility": "eligible"},
	}}
	p := nomadPool(t, f, "")
	ctx := context.Background()
	ms, err := p.Machines(ctx, "dc-eu")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].WorkerID != "host-1" || ms[0].State != StateRunning || ms[1].State != StateStopped {
		t.Fatalf("machines %+v", ms)
	}
	m, err := p.Launch(ctx, "dc-eu")
	if err != nil || m.ID != "n2" || m.WorkerID != "host-2" {
		t.Fatalf("launch %+v %v", m, err)
	}
	if err := p.Drain(ctx, ms[0]); err != nil {
		t.Fatal(err)
	}
	if err := p.Terminate(ctx, ms[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Launch(ctx, "dc-eu"); err == nil { // host-1 still draining, host-2 in use
		t.Fatal("launched without a spare node")
	}
	filter := `?region=dc-eu&filter=NodeClass == "opensandbox-worker"`
	want := []string{
		"GET /v1/nodes" + filter,
		"GET /v1/nodes" + filter,
		"PUT /v1/node/n2/eligibility eligible",
		"PUT /v1/node/n1/eligibility ineligible",
		"PUT /v1/node/n1/drain deadline=6e+10 ignoreSystemJobs=false",
		"GET /v1/nodes" + filter,
	}
	if strings.Join(f.calls, "\n") != strings.Join(want, "\n") {
		t.Fatalf("calls:\n%s\nwant:\n%s", strings.Join(f.calls, "\n"), strings.Join(want, "\n"))
	}
}

// Contract test, service job: scale-up raises the group's count;
// scale-in drains the node, then lowers the count.
func TestNomadContractServiceJob(t *testing.T) {
	f := &fakeNomad{nodes: []map[string]any{workerNode("n1", "host-1", "eligible")}, count: 1}
	p := nomadPool(t, f, "worker")
	ctx := context.Background()
	if _, err := p.Launch(ctx, "dc-eu"); err != nil {
		t.Fatal(err)
	}
	m := Machine{ID: "n1", Region: "dc-eu", WorkerID: "host-1"}
	if err := p.Drain(ctx, m); err != nil {
		t.Fatal(err)
	}
	if err := p.Terminate(ctx, m); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"GET /v1/job/opensandbox-worker",
		"PUT /v1/job/opensandbox-worker/scale group=worker count=2",
		"PUT /v1/node/n1/eligibility ineligible",
		"PUT /v1/node/n1/drain deadline=6e+10 ignoreSystemJobs=false",
		"GET /v1/job/opensandbox-worker",
		"PUT /v1/job/opensandbox-worker/scale group=worker count=1",
	}
	if strings.Join(f.calls, "\n") != strings.Join(want, "\n") {
		t.Fatalf("calls:\n%s\nwant:\n%s", strings.Join(f.calls, "\n"), strings.Join(want, "\n"))
	}
	// A wrong token is refused, and the pool says so.
	f.mu.Lock()
	f.calls = nil
	f.mu.Unlock()
	cfg := nomad.DefaultConfig()
	cfg.Address = p.client.Address()
	bad, _ := nomad.NewClient(cfg)
	p2, _ := NewNomad(quiet, bad, NomadConfig{Regions: []string{"dc-eu"}, NodeClass: "opensandbox-worker", Job: "opensandbox-worker"})
	if _, err := p2.Machines(ctx, "dc-eu"); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("without the token: %v", err)
	}
}
