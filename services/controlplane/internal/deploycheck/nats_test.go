package deploycheck

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/conf"
	"github.com/opensandbox/opensandbox/services/shared/natsx"
)

// templateExpr is one consul-template action.
var templateExpr = regexp.MustCompile(`\{\{-?.*?-?\}\}`)

// natsAuthorization returns the users of the authorization block of the
// NATS job's configuration template, with template actions replaced by
// "TPL" (a worker's region is then "TPL").
func natsAuthorization(t *testing.T) []map[string]any {
	t.Helper()
	var text string
	for _, j := range loadJobs(t) {
		if j.name != "nats" {
			continue
		}
		for _, g := range j.groups() {
			for _, task := range blocks(g.Body, "task") {
				for _, tb := range blocks(task.Body, "template") {
					if dest, _ := literal(tb.Body, "destination"); dest == "local/nats.conf" {
						text, _ = nomadContext{}.templateText(j.file, tb)
					}
				}
			}
		}
	}
	start := strings.Index(text, "authorization {")
	if start < 0 {
		t.Fatal("the nats job's configuration has no authorization block: NATS would accept anyone")
	}
	depth, end := 0, -1
	for i := start; i < len(text) && end < 0; i++ {
		switch text[i] {
		case '{':
			depth++
		case '}':
			if depth--; depth == 0 {
				end = i + 1
			}
		}
	}
	block := templateExpr.ReplaceAllString(text[start:end], "TPL")
	parsed, err := conf.Parse(block)
	if err != nil {
		t.Fatalf("parse the authorization block: %v\n%s", err, block)
	}
	authz, _ := parsed["authorization"].(map[string]any)
	var users []map[string]any
	list, _ := authz["users"].([]any)
	for _, u := range list {
		if m, ok := u.(map[string]any); ok {
			users = append(users, m)
		}
	}
	return users
}

func allowList(perms map[string]any, dir string) []string {
	d, _ := perms[dir].(map[string]any)
	raw, _ := d["allow"].([]any)
	var out []string
	for _, s := range raw {
		out = append(out, fmt.Sprint(s))
	}
	slices.Sort(out)
	return out
}

// TestNATSUsersMatchTheCode checks that production NATS knows exactly one
// user per role of the code, with the permissions natsx.Permissions grants
// (what the code's own servers enforce and its tests exercise), and that
// passwords come from the Nomad variable, never literal.
func TestNATSUsersMatchTheCode(t *testing.T) {
	users := natsAuthorization(t)
	seen := map[string]bool{}
	for _, u := range users {
		role := fmt.Sprint(u["user"])
		seen[role] = true
		if !slices.Contains(natsx.Roles, role) {
			t.Errorf("NATS user %q is not a role of the code (%v)", role, natsx.Roles)
			continue
		}
		if pw := fmt.Sprint(u["password"]); pw != "TPL" {
			t.Errorf("NATS user %s: password %q is not read from the Nomad variable", role, pw)
		}
		perms, _ := u["permissions"].(map[string]any)
		want := natsx.Permissions(role, "TPL")
		for dir, w := range map[string][]string{"publish": want.Publish.Allow, "subscribe": want.Subscribe.Allow} {
			w = slices.Sorted(slices.Values(w))
			if got := allowList(perms, dir); !slices.Equal(got, w) {
				t.Errorf("NATS user %s may %s %v; the code's role has %v", role, dir, got, w)
			}
		}
	}
	for _, r := range natsx.Roles {
		if !seen[r] {
			t.Errorf("no NATS user for role %s", r)
		}
	}
}
