package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// fakeWorkOS is a contract stand-in for WorkOS User Management: an httptest
// server speaking the documented HTTP API the dashboard uses —
// GET /user_management/authorize (redirects back with a code and the
// state), POST /user_management/authenticate (the code exchange, client
// credentials in the JSON body) and GET /organizations/{id} (Bearer API
// key). It checks every request the way WorkOS does and signs in Next.
type fakeWorkOS struct {
	t        testing.TB
	srv      *httptest.Server
	clientID string
	apiKey   string

	mu    sync.Mutex
	next  signIn            // who the next authorize "signs in"
	codes map[string]signIn // issued, single-use
	orgs  map[string]string // organization id -> name
	calls []string
}

type signIn struct {
	UserID, Email, First, Last, OrgID string
	Unverified                        bool // the email is not verified
}

func newFakeWorkOS(t testing.TB) *fakeWorkOS {
	f := &fakeWorkOS{t: t, clientID: "client_01TEST", apiKey: "sk_test_0123456789", codes: map[string]signIn{}, orgs: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /user_management/authorize", f.authorize)
	mux.HandleFunc("POST /user_management/authenticate", f.authenticate)
	mux.HandleFunc("GET /organizations/{id}", f.organization)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeWorkOS) client() *WorkOS {
	return &WorkOS{BaseURL: f.srv.URL, ClientID: f.clientID, APIKey: f.apiKey}
}

func (f *fakeWorkOS) record(call string) {
	f.mu.Lock()
	f.calls = append(f.calls, call)
	f.mu.Unlock()
}

func (f *fakeWorkOS) authorize(w http.ResponseWriter, r *http.Request) {
	f.record("authorize")
	q := r.URL.Query()
	redirect, err := url.Parse(q.Get("redirect_uri"))
	if q.Get("client_id") != f.clientID || q.Get("response_type") != "code" || q.Get("provider") != "authkit" ||
		q.Get("state") == "" || err != nil || !redirect.IsAbs() {
		http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	code := "code_" + randomToken()[:16]
	f.codes[code] = f.next
	f.mu.Unlock()
	back := redirect.Query()
	back.Set("code", code)
	back.Set("state", q.Get("state"))
	redirect.RawQuery = back.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

func (f *fakeWorkOS) authenticate(w http.ResponseWriter, r *http.Request) {
	f.record("authenticate")
	var req map[string]string
	if r.Header.Get("Content-Type") != "application/json" || json.NewDecoder(r.Body).Decode(&req) != nil {
		http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
		return
	}
	if req["client_id"] != f.clientID || req["client_secret"] != f.apiKey {
		http.Error(w, `{"error":"invalid_client","error_description":"Invalid client secret."}`, http.StatusUnauthorized)
		return
	}
	f.mu.Lock()
	who, ok := f.codes[req["code"]]
	delete(f.codes, req["code"])
	f.mu.Unlock()
	if req["grant_type"] != "authorization_code" || !ok {
		http.Error(w, `{"error":"invalid_grant","error_description":"The code is invalid or expired."}`, http.StatusBadRequest)
		return
	}
	user := map[string]any{"object": "user", "id": who.UserID, "email": who.Email, "email_verified": !who.Unverified,
		"first_name": nilIfEmpty(who.First), "last_name": nilIfEmpty(who.Last), "created_at": "2026-11-28T12:00:00.000Z"}
	out := map[string]any{"user": user, "access_token": "eyJ.fake.jwt", "refresh_token": "refresh_fake", "authentication_method": "Password"}
	if who.OrgID != "" {
		out["organization_id"] = who.OrgID
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

func (f *fakeWorkOS) organization(w http.ResponseWriter, r *http.Request) {
	f.record("organization")
	if r.Header.Get("Authorization") != "Bearer "+f.apiKey {
		http.Error(w, `{"message":"Unauthorized"}`, http.StatusUnauthorized)
		return
	}
	f.mu.Lock()
	name, ok := f.orgs[r.PathValue("id")]
	f.mu.Unlock()
	if !ok {
		http.Error(w, `{"message":"Organization not found"}`, http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"object": "organization", "id": r.PathValue("id"), "name": name})
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// followAuthorize asks the fake to sign in, as a browser would follow the
// redirect, and returns the code it sends back.
func followAuthorize(t *testing.T, authorizeURL string) (code, state string) {
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(authorizeURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil {
		t.Fatalf("authorize answered %s, Location %q", resp.Status, resp.Header.Get("Location"))
	}
	return loc.Query().Get("code"), loc.Query().Get("state")
}

func TestWorkOSContractSignIn(t *testing.T) {
	f := newFakeWorkOS(t)
	f.next = signIn{UserID: "user_01A", Email: "ada@example.com", First: "Ada", Last: "Lovelace", OrgID: "org_01X"}
	f.orgs["org_01X"] = "Analytical Engines"
	w := f.client()
	au := w.AuthorizeURL("http://127.0.0.1:9/auth/callback", "state-123")
	if !strings.HasPrefix(au, f.srv.URL+"/user_management/authorize?") {
		t.Fatalf("authorize URL %s", au)
	}
	code, state := followAuthorize(t, au)
	if code == "" || state != "state-123" {
		t.Fatalf("callback code %q state %q", code, state)
	}
	id, err := w.Authenticate(context.Background(), code, "203.0.113.7", "test-agent")
	if err != nil {
		t.Fatal(err)
	}
	if id.WorkOSUserID != "user_01A" || id.Email != "ada@example.com" || !id.EmailVerified || id.Name != "Ada Lovelace" || id.WorkOSOrgID != "org_01X" || id.OrgName != "Analytical Engines" {
		t.Fatalf("identity %+v", id)
	}
	// A code is single-use: WorkOS refuses it again, and that is a refusal,
	// not an outage.
	if _, err := w.Authenticate(context.Background(), code, "", ""); !errors.Is(err, errRefused) {
		t.Fatalf("reused code: %v, want errRefused", err)
	}
	// A wrong secret is this server's fault, not the user's.
	bad := f.client()
	bad.APIKey = "sk_test_wrong"
	if _, err := bad.Authenticate(context.Background(), "whatever", "", ""); !errors.Is(err, errMisconfigured) {
		t.Fatalf("wrong secret: %v, want errMisconfigured", err)
	}
}

func TestWorkOSUnreachableIsNotARefusal(t *testing.T) {
	f := newFakeWorkOS(t)
	w := f.client()
	f.srv.Close()
	_, err := w.Authenticate(context.Background(), "code", "", "")
	if err == nil || errors.Is(err, errRefused) {
		t.Fatalf("closed WorkOS: %v, want an error that is not errRefused", err)
	}
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "upstream down", http.StatusBadGateway)
	}))
	defer broken.Close()
	w.BaseURL = broken.URL
	if _, err := w.Authenticate(context.Background(), "code", "", ""); err == nil || errors.Is(err, errRefused) {
		t.Fatalf("502 from WorkOS: %v, want an error that is not errRefused", err)
	}
}
