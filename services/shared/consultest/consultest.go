// Package consultest is a Consul stand-in for contract tests: an httptest
// server per datacenter that speaks the part of Consul's documented HTTP API
// OpenSandbox uses (agent service register/deregister, TTL check updates,
// health service queries with blocking X-Consul-Index, the catalog's
// datacenter list). Consul itself cannot run on the test machines; the real
// client (hashicorp/consul/api) talks to this server unchanged.
//
// Each datacenter's server plays that datacenter's local agent (one node);
// reads with ?dc= reach the named datacenter, as a Consul server forwards
// them across the WAN.
package consultest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Check statuses, as Consul names them.
const (
	Passing  = "passing"
	Warning  = "warning"
	Critical = "critical"
)

// Server is a fake Consul with one agent per datacenter.
type Server struct {
	// Token, when set, is the only ACL token accepted (X-Consul-Token).
	Token string

	mu      sync.Mutex
	dcs     map[string]*datacenter
	changed chan struct{} // closed and replaced on every change
	calls   []string
	servers []*httptest.Server
}

type datacenter struct {
	name     string
	url      string
	index    uint64
	services map[string]*service // by service ID
}

type service struct {
	reg      Registration
	node     string
	status   string
	output   string
	ttl      time.Duration
	deadline time.Time // a TTL check not updated by then turns critical
}

// Registration is the body of PUT /v1/agent/service/register (the fields
// OpenSandbox uses).
type Registration struct {
	ID      string            `json:"ID"`
	Name    string            `json:"Name"`
	Tags    []string          `json:"Tags"`
	Address string            `json:"Address"`
	Port    int               `json:"Port"`
	Meta    map[string]string `json:"Meta"`
	Check   *CheckDef         `json:"Check"`
}

// CheckDef is a service's check at registration.
type CheckDef struct {
	CheckID                        string `json:"CheckID"`
	Name                           string `json:"Name"`
	TTL                            string `json:"TTL"`
	Status                         string `json:"Status"`
	DeregisterCriticalServiceAfter string `json:"DeregisterCriticalServiceAfter"`
}

// New starts one agent per datacenter; they stop at the end of the test.
func New(t testing.TB, dcs ...string) *Server {
	t.Helper()
	s := &Server{dcs: map[string]*datacenter{}, changed: make(chan struct{})}
	for _, dc := range dcs {
		d := &datacenter{name: dc, index: 1, services: map[string]*service{}}
		srv := httptest.NewServer(s.handler(d))
		d.url = srv.URL
		s.dcs[dc] = d
		s.servers = append(s.servers, srv)
	}
	stop := make(chan struct{})
	go s.expireTTLs(stop)
	t.Cleanup(func() {
		close(stop)
		for _, srv := range s.servers {
			srv.CloseClientConnections()
			srv.Close()
		}
	})
	return s
}

// Addr is the URL of dc's local agent (what CONSUL_HTTP_ADDR names).
func (s *Server) Addr(dc string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dcs[dc].url
}

// Calls returns "METHOD /path" of every request so far.
func (s *Server) Calls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.calls...)
}

// Services returns the registrations of dc by service ID.
func (s *Server) Services(dc string) map[string]Registration {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]Registration{}
	for id, svc := range s.dcs[dc].services {
		out[id] = svc.reg
	}
	return out
}

// Status returns the check status of a service (empty when absent).
func (s *Server) Status(dc, serviceID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if svc, ok := s.dcs[dc].services[serviceID]; ok {
		return svc.status
	}
	return ""
}

// SetStatus sets a service's check as the agent would on its own (a TTL
// that ran out, a failed probe); a TTL check stays so until updated.
func (s *Server) SetStatus(dc, serviceID, status string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.dcs[dc]
	if svc, ok := d.services[serviceID]; ok {
		svc.status = status
		svc.deadline = time.Now().Add(24 * time.Hour)
		s.bump(d)
	}
}

// Remove takes a service out of the catalog (a node that left).
func (s *Server) Remove(dc, serviceID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.dcs[dc]
	delete(d.services, serviceID)
	s.bump(d)
}

// Index is dc's current X-Consul-Index.
func (s *Server) Index(dc string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dcs[dc].index
}

// bump records a change in d and wakes blocked queries (mu held).
func (s *Server) bump(d *datacenter) {
	d.index++
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Server) expireTTLs(stop chan struct{}) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			s.mu.Lock()
			for _, d := range s.dcs {
				for _, svc := range d.services {
					if svc.ttl > 0 && svc.status != Critical && now.After(svc.deadline) {
						svc.status, svc.output = Critical, "TTL expired"
						s.bump(d)
					}
				}
			}
			s.mu.Unlock()
		}
	}
}

func (s *Server) handler(local *datacenter) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.calls = append(s.calls, r.Method+" "+r.URL.Path)
		s.mu.Unlock()
		if s.Token != "" && r.Header.Get("X-Consul-Token") != s.Token {
			http.Error(w, "ACL not found", http.StatusForbidden)
			return
		}
		p := r.URL.Path
		switch {
		case r.Method == http.MethodPut && p == "/v1/agent/service/register":
			s.register(w, r, local)
		case r.Method == http.MethodPut && strings.HasPrefix(p, "/v1/agent/service/deregister/"):
			s.deregister(w, local, strings.TrimPrefix(p, "/v1/agent/service/deregister/"))
		case r.Method == http.MethodPut && strings.HasPrefix(p, "/v1/agent/check/update/"):
			var body struct{ Status, Output string }
			if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
				http.Error(w, "bad body: "+err.Error(), http.StatusBadRequest)
				return
			}
			s.updateCheck(w, local, strings.TrimPrefix(p, "/v1/agent/check/update/"), body.Status, body.Output)
		case r.Method == http.MethodPut && strings.HasPrefix(p, "/v1/agent/check/pass/"):
			s.updateCheck(w, local, strings.TrimPrefix(p, "/v1/agent/check/pass/"), Passing, r.URL.Query().Get("note"))
		case r.Method == http.MethodPut && strings.HasPrefix(p, "/v1/agent/check/fail/"):
			s.updateCheck(w, local, strings.TrimPrefix(p, "/v1/agent/check/fail/"), Critical, r.URL.Query().Get("note"))
		case r.Method == http.MethodGet && p == "/v1/catalog/datacenters":
			s.datacenters(w)
		case r.Method == http.MethodGet && strings.HasPrefix(p, "/v1/health/service/"):
			s.healthService(w, r, local, strings.TrimPrefix(p, "/v1/health/service/"))
		default:
			http.Error(w, "consultest: "+r.Method+" "+p+" is not part of the contract", http.StatusNotFound)
		}
	})
}

func (s *Server) register(w http.ResponseWriter, r *http.Request, d *datacenter) {
	var reg Registration
	if err := json.NewDecoder(r.Body).Decode(&reg); err != nil {
		http.Error(w, "Request decode failed: "+err.Error(), http.StatusBadRequest)
		return
	}
	if reg.Name == "" {
		http.Error(w, "Missing service name", http.StatusBadRequest)
		return
	}
	if reg.ID == "" {
		reg.ID = reg.Name
	}
	svc := &service{reg: reg, node: "node-" + d.name, status: Passing}
	if c := reg.Check; c != nil {
		svc.status = Critical // Consul's default for a new check
		if c.Status != "" {
			svc.status = c.Status
		}
		if c.TTL != "" {
			ttl, err := time.ParseDuration(c.TTL)
			if err != nil {
				http.Error(w, "invalid TTL: "+err.Error(), http.StatusBadRequest)
				return
			}
			svc.ttl, svc.deadline = ttl, time.Now().Add(ttl)
		}
	}
	s.mu.Lock()
	if old, ok := d.services[reg.ID]; ok && reg.Check != nil && reg.Check.Status == "" {
		svc.status, svc.deadline = old.status, old.deadline // re-registration keeps the check's state
	}
	d.services[reg.ID] = svc
	s.bump(d)
	s.mu.Unlock()
}

func (s *Server) deregister(w http.ResponseWriter, d *datacenter, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := d.services[id]; !ok {
		http.Error(w, "Unknown service ID "+strconv.Quote(id), http.StatusNotFound)
		return
	}
	delete(d.services, id)
	s.bump(d)
}

// checkID is the check of a service registered with one unnamed check.
func checkID(svc *service) string {
	if svc.reg.Check != nil && svc.reg.Check.CheckID != "" {
		return svc.reg.Check.CheckID
	}
	return "service:" + svc.reg.ID
}

func (s *Server) updateCheck(w http.ResponseWriter, d *datacenter, id, status, output string) {
	switch status {
	case Passing, Warning, Critical:
	default:
		http.Error(w, "Invalid status "+strconv.Quote(status), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, svc := range d.services {
		if checkID(svc) == id && svc.reg.Check != nil {
			if svc.status != status || svc.output != output {
				svc.status, svc.output = status, output
				s.bump(d)
			}
			if svc.ttl > 0 {
				svc.deadline = time.Now().Add(svc.ttl)
			}
			return
		}
	}
	http.Error(w, "Unknown check ID "+strconv.Quote(id), http.StatusNotFound)
}

func (s *Server) datacenters(w http.ResponseWriter) {
	s.mu.Lock()
	names := make([]string, 0, len(s.dcs))
	for n := range s.dcs {
		names = append(names, n)
	}
	s.mu.Unlock()
	sort.Strings(names)
	json.NewEncoder(w).Encode(names)
}

// HealthEntry is one element of GET /v1/health/service/:service.
type HealthEntry struct {
	Node    map[string]any `json:"Node"`
	Service map[string]any `json:"Service"`
	Checks  []any          `json:"Checks"`
}

func (s *Server) healthService(w http.ResponseWriter, r *http.Request, local *datacenter, name string) {
	q := r.URL.Query()
	s.mu.Lock()
	d := local
	if dc := q.Get("dc"); dc != "" {
		var ok bool
		if d, ok = s.dcs[dc]; !ok {
			s.mu.Unlock()
			http.Error(w, "No path to datacenter", http.StatusInternalServerError)
			return
		}
	}
	// A blocking query: wait until the index passes the caller's, or the
	// wait (default 5m, at most 10m) runs out.
	if idx, err := strconv.ParseUint(q.Get("index"), 10, 64); err == nil && idx > 0 {
		wait := 5 * time.Minute
		if ws := q.Get("wait"); ws != "" {
			if wd, err := time.ParseDuration(ws); err == nil {
				wait = min(wd, 10*time.Minute)
			}
		}
		timer := time.NewTimer(wait)
		defer timer.Stop()
		for d.index <= idx {
			ch := s.changed
			s.mu.Unlock()
			timedOut := false
			select {
			case <-ch:
			case <-timer.C:
				timedOut = true
			case <-r.Context().Done():
				return
			}
			s.mu.Lock()
			if timedOut {
				break // time is up: answer as things are
			}
		}
	}
	_, passingOnly := q["passing"]
	out := []HealthEntry{}
	ids := make([]string, 0, len(d.services))
	for id := range d.services {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		svc := d.services[id]
		if svc.reg.Name != name || (passingOnly && svc.status != Passing) {
			continue
		}
		checks := []any{map[string]any{"Node": svc.node, "CheckID": "serfHealth", "Name": "Serf Health Status", "Status": Passing}}
		if svc.reg.Check != nil {
			checks = append(checks, map[string]any{"Node": svc.node, "CheckID": checkID(svc), "Name": "Service '" + name + "' check",
				"Status": svc.status, "Output": svc.output, "ServiceID": svc.reg.ID, "ServiceName": name})
		}
		out = append(out, HealthEntry{
			Node: map[string]any{"Node": svc.node, "Address": "127.0.0.1", "Datacenter": d.name},
			Service: map[string]any{"ID": svc.reg.ID, "Service": name, "Tags": svc.reg.Tags, "Address": svc.reg.Address,
				"Port": svc.reg.Port, "Meta": svc.reg.Meta},
			Checks: checks,
		})
	}
	index := d.index
	s.mu.Unlock()
	w.Header().Set("X-Consul-Index", fmt.Sprint(index))
	w.Header().Set("X-Consul-KnownLeader", "true")
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}
