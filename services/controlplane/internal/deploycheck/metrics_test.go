package deploycheck

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// seriesNames maps every series name the registered metrics expose to its
// metric: counters and gauges by name, histograms only through _bucket,
// _sum and _count, summaries by name and _sum/_count.
func seriesNames(metrics map[string]metricDef) map[string]metricDef {
	out := map[string]metricDef{}
	for name, m := range metrics {
		switch m.kind {
		case "histogram":
			bucket := metricDef{kind: m.kind, labels: map[string]bool{"le": true}}
			for l := range m.labels {
				bucket.labels[l] = true
			}
			out[name+"_bucket"] = bucket
			out[name+"_sum"], out[name+"_count"] = m, m
		case "summary":
			q := metricDef{kind: m.kind, labels: map[string]bool{"quantile": true}}
			for l := range m.labels {
				q.labels[l] = true
			}
			out[name], out[name+"_sum"], out[name+"_count"] = q, m, m
		default:
			out[name] = m
		}
	}
	return out
}

var (
	ourMetric     = regexp.MustCompile(`\bopensandbox_[a-z0-9_]+`)
	selectorAfter = regexp.MustCompile(`^\{([^}]*)\}`)
	matcher       = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"`)
	grouping      = regexp.MustCompile(`\b(by|without)\s*\(([^)]*)\)`)
	labelValues   = regexp.MustCompile(`label_values\(\s*(.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)`)
)

// checkExpr returns what is wrong with one PromQL expression: series that no
// binary exposes, and label names that neither the metrics nor the scrape
// relabeling (targetLabels) provide.
func checkExpr(expr string, series map[string]metricDef, targetLabels map[string]bool) []string {
	var problems []string
	used := map[string]bool{}
	for k := range targetLabels {
		used[k] = true
	}
	ours := false
	for _, loc := range ourMetric.FindAllStringIndex(expr, -1) {
		name := expr[loc[0]:loc[1]]
		m, ok := series[name]
		if !ok {
			problems = append(problems, fmt.Sprintf("series %s is not exposed by any binary", name))
			continue
		}
		ours = true
		for l := range m.labels {
			used[l] = true
		}
		if sel := selectorAfter.FindStringSubmatch(expr[loc[1]:]); sel != nil {
			for _, mm := range matcher.FindAllStringSubmatch(sel[1], -1) {
				if !m.labels[mm[1]] && !targetLabels[mm[1]] {
					problems = append(problems, fmt.Sprintf("%s has no label %q", name, mm[1]))
				}
			}
		}
	}
	if !ours {
		return problems // other exporters' series: their labels are theirs
	}
	check := func(labels string) {
		for _, l := range strings.Split(labels, ",") {
			if l = strings.TrimSpace(l); l != "" && !used[l] {
				problems = append(problems, fmt.Sprintf("label %q is on none of the series in %q", l, expr))
			}
		}
	}
	for _, g := range grouping.FindAllStringSubmatch(expr, -1) {
		check(g[2])
	}
	for _, lv := range labelValues.FindAllStringSubmatch(expr, -1) {
		check(lv[2])
	}
	return problems
}

// targetLabels are the labels every scraped series carries: job and
// instance, plus each target_label the Prometheus configuration sets.
func targetLabels(t *testing.T) map[string]bool {
	var cfg struct {
		ScrapeConfigs []struct {
			JobName        string `yaml:"job_name"`
			RelabelConfigs []struct {
				TargetLabel string `yaml:"target_label"`
			} `yaml:"relabel_configs"`
		} `yaml:"scrape_configs"`
	}
	loadYAML(t, path(t, "nomad", "observability", "prometheus.yml"), &cfg)
	out := map[string]bool{"job": true, "instance": true}
	for _, sc := range cfg.ScrapeConfigs {
		for _, rc := range sc.RelabelConfigs {
			if rc.TargetLabel != "" {
				out[rc.TargetLabel] = true
			}
		}
	}
	return out
}

// dashboardQueries returns every query string of a dashboard: panel and
// row targets, and templating variable queries.
func dashboardQueries(v any) []string {
	var out []string
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && (k == "expr" || k == "query" || k == "definition") {
				out = append(out, s)
				continue
			}
			out = append(out, dashboardQueries(x)...)
		}
	case []any:
		for _, x := range v {
			out = append(out, dashboardQueries(x)...)
		}
	}
	return out
}

// TestDashboardsUseRealMetrics parses every dashboard and checks each query
// against the metrics the Go code registers.
func TestDashboardsUseRealMetrics(t *testing.T) {
	series := seriesNames(services(t).metrics())
	tl := targetLabels(t)
	uids := map[string]string{}
	for _, p := range files(t, "nomad/observability/grafana/dashboards", ".json") {
		var d struct {
			UID    string `json:"uid"`
			Title  string `json:"title"`
			Panels []struct {
				Title      string `json:"title"`
				Type       string `json:"type"`
				Datasource *struct {
					UID string `json:"uid"`
				} `json:"datasource"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
		}
		raw := read(t, p)
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Errorf("%s: %v", rel(t, p), err)
			continue
		}
		if d.UID == "" || d.Title == "" {
			t.Errorf("%s: dashboard needs a uid and a title", rel(t, p))
		}
		if other, dup := uids[d.UID]; dup {
			t.Errorf("%s: uid %q already used by %s", rel(t, p), d.UID, other)
		}
		uids[d.UID] = rel(t, p)
		for _, panel := range d.Panels {
			if panel.Type == "row" {
				continue
			}
			if panel.Datasource == nil || panel.Datasource.UID != "prometheus" {
				t.Errorf("%s: panel %q does not use the provisioned datasource (uid prometheus)", rel(t, p), panel.Title)
			}
			if len(panel.Targets) == 0 || slices.ContainsFunc(panel.Targets, func(x struct {
				Expr string `json:"expr"`
			}) bool {
				return strings.TrimSpace(x.Expr) == ""
			}) {
				t.Errorf("%s: panel %q has an empty query", rel(t, p), panel.Title)
			}
		}
		var generic any
		json.Unmarshal(raw, &generic)
		for _, q := range dashboardQueries(generic) {
			for _, problem := range checkExpr(q, series, tl) {
				t.Errorf("%s: %s", rel(t, p), problem)
			}
		}
	}
	if len(uids) < 2 {
		t.Errorf("want the overview and the per-worker dashboards, found %d", len(uids))
	}
}

// TestAlertRulesUseRealMetrics parses the rule files and checks each rule.
func TestAlertRulesUseRealMetrics(t *testing.T) {
	series := seriesNames(services(t).metrics())
	tl := targetLabels(t)
	var alerts []string
	for _, p := range files(t, "nomad/observability/rules", ".yml") {
		var rf struct {
			Groups []struct {
				Name  string `yaml:"name"`
				Rules []struct {
					Alert       string            `yaml:"alert"`
					Expr        string            `yaml:"expr"`
					For         string            `yaml:"for"`
					Labels      map[string]string `yaml:"labels"`
					Annotations map[string]string `yaml:"annotations"`
				} `yaml:"rules"`
			} `yaml:"groups"`
		}
		loadYAML(t, p, &rf)
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				alerts = append(alerts, r.Alert)
				where := fmt.Sprintf("%s: %s", rel(t, p), r.Alert)
				if r.Alert == "" || strings.TrimSpace(r.Expr) == "" {
					t.Errorf("%s/%s: a rule needs alert and expr", rel(t, p), g.Name)
				}
				if r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
					t.Errorf("%s: needs labels.severity and annotations.summary", where)
				}
				if r.For != "" {
					if _, err := time.ParseDuration(r.For); err != nil {
						t.Errorf("%s: for %q: %v", where, r.For, err)
					}
				}
				for _, problem := range checkExpr(r.Expr, series, tl) {
					t.Errorf("%s: %s", where, problem)
				}
			}
		}
	}
	// The alerts the deployment promises (docs/deploy.md).
	for _, want := range []string{"OpenSandboxWorkerHeartbeatStale", "OpenSandboxCreateErrorRate", "OpenSandboxSyncerLag", "OpenSandboxSyncerBacklog", "OpenSandboxEventsDeadLettered"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("alert %s is missing", want)
		}
	}
}

// TestMetricChecksCanFail feeds the expression check wrong queries.
func TestMetricChecksCanFail(t *testing.T) {
	series := seriesNames(map[string]metricDef{
		"opensandbox_commands_total":        {kind: "counter", labels: map[string]bool{"exit_class": true}},
		"opensandbox_exec_duration_seconds": {kind: "histogram", labels: map[string]bool{}},
	})
	tl := map[string]bool{"job": true, "node": true}
	for expr, want := range map[string]string{
		`rate(opensandbox_comands_total[5m])`:                                                                     "opensandbox_comands_total is not exposed",
		`rate(opensandbox_exec_duration_seconds[5m])`:                                                             "opensandbox_exec_duration_seconds is not exposed", // a histogram has no bare series
		`rate(opensandbox_commands_total_count[5m])`:                                                              "opensandbox_commands_total_count is not exposed",
		`rate(opensandbox_commands_total{exitclass="ok"}[5m])`:                                                    `has no label "exitclass"`,
		`sum by (code) (rate(opensandbox_commands_total[5m]))`:                                                    `label "code" is on none`,
		`histogram_quantile(0.9, sum by (le) (rate(opensandbox_exec_duration_seconds_bucket[5m]))) > bogus_total`: "",
		`label_values(opensandbox_commands_total, worker)`:                                                        `label "worker" is on none`,
	} {
		problems := checkExpr(expr, series, tl)
		if want == "" {
			if len(problems) > 0 {
				t.Errorf("%s: unexpected problems %q", expr, problems)
			}
			continue
		}
		if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, want) }) {
			t.Errorf("%s: problems %q do not mention %q", expr, problems, want)
		}
	}
}
