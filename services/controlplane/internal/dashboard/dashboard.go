// Package dashboard serves the web dashboard: sign-in through WorkOS
// (AuthKit), the browser's session, and the pages and JSON the dashboard's
// front end (web/) uses — the org's sandboxes and its API keys.
package dashboard

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/filesystem"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/keyauth"
	"github.com/opensandbox/opensandbox/services/controlplane/internal/store"
	"github.com/opensandbox/opensandbox/services/shared/errs"
	"github.com/prometheus/client_golang/prometheus"
)

//go:embed web
var web embed.FS

// Config configures the dashboard.
type Config struct {
	WorkOS *WorkOS
	// PublicURL is the control plane as browsers reach it
	// (https://api.example.com): WorkOS sends them back to PublicURL +
	// /auth/callback, and an https URL makes the cookies Secure.
	PublicURL  string
	SessionTTL time.Duration // default 12 h
	// PersonalOrgs lets a new user who signs in outside any WorkOS
	// organization have an org of its own. Off, only members of WorkOS
	// organizations (and users an operator made) get in: with AuthKit's
	// sign-up open, anyone on the internet could otherwise run sandboxes.
	PersonalOrgs bool
}

// Cookies and the header every state-changing dashboard request carries.
const (
	sessionCookie = "osb_session"
	stateCookie   = "osb_oauth_state"
	// A header a page of another site cannot send without a CORS preflight,
	// which this server never grants: with SameSite=Lax cookies, the CSRF
	// defence of POST and DELETE.
	csrfHeader = "X-OSB-Dashboard"
	dbTimeout  = 5 * time.Second
)

// Dashboard is the dashboard's handlers.
type Dashboard struct {
	log    *slog.Logger
	st     *store.Store
	cfg    Config
	secure bool
	logins *prometheus.CounterVec
}

// New returns the dashboard; reg gets its metrics.
func New(log *slog.Logger, st *store.Store, cfg Config, reg prometheus.Registerer) *Dashboard {
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	d := &Dashboard{log: log, st: st, cfg: cfg, secure: strings.HasPrefix(cfg.PublicURL, "https://"),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "opensandbox_dashboard_logins_total", Help: "Dashboard sign-ins, by result (ok, bad_state, refused, unavailable, error).",
		}, []string{"result"})}
	reg.MustRegister(d.logins)
	return d
}

// Mount adds the dashboard's routes; sessions serves the org's sandbox
// sessions (the handler of GET /sessions, given the signed-in user's org)
// and lifecycle mounts the mode's sandbox routes (create, list, get, kill,
// timeout) under /dashboard/api for the signed-in user's org.
// Mount before any API-key middleware: these routes take the session cookie.
func (d *Dashboard) Mount(app *fiber.App, sessions fiber.Handler, lifecycle func(fiber.Router)) {
	app.Get("/auth/login", d.login)
	app.Get("/auth/callback", d.callback)
	app.Post("/auth/logout", requireCSRF, d.logout)
	app.Get("/dashboard", func(c *fiber.Ctx) error {
		if c.Path() == "/dashboard" { // routing is not strict: this route sees /dashboard/ too
			return c.Redirect("/dashboard/", http.StatusMovedPermanently)
		}
		return c.Next()
	})
	api := app.Group("/dashboard/api", d.requireSession, requireCSRF)
	api.Get("/me", d.me)
	api.Get("/sessions", sessions)
	api.Get("/sessions/:sandboxID/commands", d.commands)
	api.Get("/keys", d.listKeys)
	api.Post("/keys", d.createKey)
	api.Delete("/keys/:id", d.revokeKey)
	if lifecycle != nil {
		lifecycle(api)
	}
	files, _ := fs.Sub(web, "web")
	app.Use("/dashboard", securityHeaders, filesystem.New(filesystem.Config{Root: http.FS(files), Index: "index.html"}),
		func(c *fiber.Ctx) error { return errs.NotFound("not_found", "no page %s", c.Path()) })
}

// securityHeaders keeps the pages to their own scripts and out of frames.
func securityHeaders(c *fiber.Ctx) error {
	c.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
	c.Set("X-Content-Type-Options", "nosniff")
	c.Set("Referrer-Policy", "same-origin")
	return c.Next()
}

// login sends the browser to WorkOS with a fresh state, kept in a cookie
// to be matched on the way back.
func (d *Dashboard) login(c *fiber.Ctx) error {
	state := randomToken()
	d.setCookie(c, stateCookie, state, 10*time.Minute)
	return c.Redirect(d.cfg.WorkOS.AuthorizeURL(d.cfg.PublicURL+"/auth/callback", state), http.StatusFound)
}

// callback finishes a sign-in: the state must match the cookie's, the code
// is exchanged with WorkOS, the user and org are provisioned, and the
// browser gets a session.
func (d *Dashboard) callback(c *fiber.Ctx) error {
	want, got := c.Cookies(stateCookie), c.Query("state")
	d.clearCookie(c, stateCookie)
	if want == "" || subtle.ConstantTimeCompare([]byte(want), []byte(got)) != 1 {
		d.logins.WithLabelValues("bad_state").Inc()
		return errs.Invalid("sign-in state does not match; start again at /auth/login")
	}
	if e := c.Query("error"); e != "" {
		d.logins.WithLabelValues("refused").Inc()
		return errs.New(errs.KindUnauthenticated, "unauthenticated", "sign-in failed: %s", e)
	}
	code := c.Query("code")
	if code == "" {
		d.logins.WithLabelValues("bad_state").Inc()
		return errs.Invalid("sign-in callback without a code")
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), 15*time.Second)
	defer cancel()
	id, err := d.cfg.WorkOS.Authenticate(ctx, code, c.IP(), c.Get(fiber.HeaderUserAgent))
	switch {
	case errors.Is(err, errRefused):
		d.logins.WithLabelValues("refused").Inc()
		d.log.Warn("dashboard sign-in refused by WorkOS", "err", err)
		return errs.New(errs.KindUnauthenticated, "unauthenticated", "sign-in failed; start again at /auth/login")
	case errors.Is(err, errMisconfigured):
		d.logins.WithLabelValues("error").Inc()
		d.log.Error("dashboard sign-in: WorkOS refuses our credentials (WORKOS_CLIENT_ID, WORKOS_API_KEY)", "err", err)
		return errs.Internal("sign-in is misconfigured on this server", err)
	case err != nil:
		d.logins.WithLabelValues("unavailable").Inc()
		return errs.Unavailable("identity_provider_unavailable", "cannot reach WorkOS now").WithCause(err)
	}
	user, org, err := d.st.ProvisionUser(ctx, id, d.cfg.PersonalOrgs)
	switch {
	case errors.Is(err, store.ErrEmailUnverified):
		d.logins.WithLabelValues("refused").Inc()
		return errs.New(errs.KindForbidden, "forbidden", "verify your email address with the sign-in provider first")
	case errors.Is(err, store.ErrNoOrganization):
		d.logins.WithLabelValues("refused").Inc()
		return errs.New(errs.KindForbidden, "forbidden", "sign in through your organization; this account belongs to none here")
	case errors.Is(err, store.ErrExists):
		d.logins.WithLabelValues("error").Inc()
		return errs.New(errs.KindConflict, "conflict", "another account already uses this email")
	case err != nil:
		d.logins.WithLabelValues("error").Inc()
		return errs.Unavailable("database_unavailable", "cannot sign in now").WithCause(err)
	}
	token := randomToken()
	if err := d.st.CreateDashboardSession(ctx, user.ID, store.HashKey(token), time.Now().Add(d.cfg.SessionTTL)); err != nil {
		d.logins.WithLabelValues("error").Inc()
		return errs.Unavailable("database_unavailable", "cannot sign in now").WithCause(err)
	}
	d.setCookie(c, sessionCookie, token, d.cfg.SessionTTL)
	d.logins.WithLabelValues("ok").Inc()
	d.log.Info("dashboard sign-in", "user_id", user.ID, "org_id", org.ID)
	return c.Redirect("/dashboard/", http.StatusSeeOther)
}

// logout ends the session, if any, and clears its cookie.
func (d *Dashboard) logout(c *fiber.Ctx) error {
	if token := c.Cookies(sessionCookie); token != "" {
		ctx, cancel := context.WithTimeout(c.UserContext(), dbTimeout)
		defer cancel()
		if err := d.st.DeleteDashboardSession(ctx, store.HashKey(token)); err != nil {
			return errs.Unavailable("database_unavailable", "cannot sign out now").WithCause(err)
		}
	}
	d.clearCookie(c, sessionCookie)
	return c.SendStatus(http.StatusNoContent)
}

const (
	localUser = "dashboard_user"
	localOrg  = "dashboard_org"
)

// requireSession lets through a request with a live session; the org's
// routes then see the user's org as the caller, with read and write scope
// over its sandboxes (what a member of the org may do).
func (d *Dashboard) requireSession(c *fiber.Ctx) error {
	token := c.Cookies(sessionCookie)
	if token == "" {
		return errs.New(errs.KindUnauthenticated, "unauthenticated", "not signed in")
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), dbTimeout)
	defer cancel()
	user, org, err := d.st.DashboardSession(ctx, store.HashKey(token))
	if errors.Is(err, store.ErrNotFound) {
		d.clearCookie(c, sessionCookie)
		return errs.New(errs.KindUnauthenticated, "unauthenticated", "session ended; sign in again")
	}
	if err != nil {
		return errs.Unavailable("database_unavailable", "cannot check the session now").WithCause(err)
	}
	c.Locals(localUser, user)
	c.Locals(localOrg, org)
	keyauth.SetCaller(c, keyauth.Caller{Org: org, Scopes: []string{keyauth.ScopeWrite}})
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Next()
}

// requireCSRF lets reads through and wants the header on everything else.
func requireCSRF(c *fiber.Ctx) error {
	if m := c.Method(); m != fiber.MethodGet && m != fiber.MethodHead && c.Get(csrfHeader) != "1" {
		return errs.New(errs.KindForbidden, "forbidden", "missing the %s header", csrfHeader)
	}
	return c.Next()
}

type meJSON struct {
	User struct {
		ID    string `json:"id"`
		Email string `json:"email"`
		Name  string `json:"name"`
		Role  string `json:"role"`
	} `json:"user"`
	Org struct {
		ID                     string `json:"id"`
		Name                   string `json:"name"`
		Slug                   string `json:"slug"`
		Plan                   string `json:"plan"`
		MaxConcurrentSandboxes int    `json:"maxConcurrentSandboxes"`
		MaxSandboxTimeoutSec   int    `json:"maxSandboxTimeoutSec"`
	} `json:"org"`
}

func (d *Dashboard) me(c *fiber.Ctx) error {
	u, o := c.Locals(localUser).(store.User), c.Locals(localOrg).(store.Org)
	var out meJSON
	out.User.ID, out.User.Email, out.User.Name, out.User.Role = u.ID, u.Email, u.Name, u.Role
	out.Org.ID, out.Org.Name, out.Org.Slug, out.Org.Plan = o.ID, o.Name, o.Slug, o.Plan
	out.Org.MaxConcurrentSandboxes, out.Org.MaxSandboxTimeoutSec = o.MaxConcurrentSandboxes, o.MaxSandboxTimeoutSec
	return c.JSON(out)
}

type commandJSON struct {
	Command    string    `json:"command"`
	Args       []string  `json:"args"`
	Cwd        string    `json:"cwd,omitempty"`
	ExitCode   int       `json:"exitCode"`
	DurationMs int64     `json:"durationMs"`
	StdoutLen  int64     `json:"stdoutLen"`
	StderrLen  int64     `json:"stderrLen"`
	CreatedAt  time.Time `json:"createdAt"`
}

// commands serves a sandbox's command history, newest first (?limit=,
// default 100, at most 1000).
func (d *Dashboard) commands(c *fiber.Ctx) error {
	limit := c.QueryInt("limit", 100)
	if limit <= 0 || limit > 1000 {
		return errs.Invalid("limit must be between 1 and 1000")
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), dbTimeout)
	defer cancel()
	list, err := d.st.Commands(ctx, c.Locals(localOrg).(store.Org).ID, c.Params("sandboxID"), limit)
	if errors.Is(err, store.ErrNotFound) {
		return errs.NotFound("sandbox_not_found", "no sandbox %q in this org", c.Params("sandboxID"))
	}
	if err != nil {
		return errs.Unavailable("database_unavailable", "cannot read the command history now").WithCause(err)
	}
	out := make([]commandJSON, 0, len(list))
	for _, x := range list {
		out = append(out, commandJSON{Command: x.Command, Args: x.Args, Cwd: x.Cwd, ExitCode: x.ExitCode, DurationMs: x.DurationMs,
			StdoutLen: x.StdoutLen, StderrLen: x.StderrLen, CreatedAt: x.CreatedAt})
	}
	return c.JSON(out)
}

// keyJSON is a key as the dashboard shows it (never the key itself).
type keyJSON struct {
	ID        string     `json:"id"`
	CreatedBy string     `json:"createdBy,omitempty"` // the user who made it; empty for an operator's key
	Name      string     `json:"name"`
	Prefix    string     `json:"prefix"`
	Scopes    []string   `json:"scopes"`
	CreatedAt time.Time  `json:"createdAt"`
	LastUsed  *time.Time `json:"lastUsed,omitempty"`
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
	RevokedAt *time.Time `json:"revokedAt,omitempty"`
}

func toKeyJSON(k store.APIKey) keyJSON {
	return keyJSON{ID: k.ID, CreatedBy: k.CreatedBy, Name: k.Name, Prefix: k.Prefix, Scopes: k.Scopes, CreatedAt: k.CreatedAt,
		LastUsed: k.LastUsed, ExpiresAt: k.ExpiresAt, RevokedAt: k.RevokedAt}
}

func (d *Dashboard) listKeys(c *fiber.Ctx) error {
	ctx, cancel := context.WithTimeout(c.UserContext(), dbTimeout)
	defer cancel()
	keys, err := d.st.ListKeys(ctx, c.Locals(localOrg).(store.Org).ID)
	if err != nil {
		return errs.Unavailable("database_unavailable", "cannot list keys now").WithCause(err)
	}
	out := make([]keyJSON, 0, len(keys))
	for _, k := range keys {
		out = append(out, toKeyJSON(k))
	}
	return c.JSON(out)
}

// createKey makes an API key for the org and answers it once. The
// dashboard grants the sandbox scopes only: admin keys are an operator's
// (opensandbox-server admin create-key).
func (d *Dashboard) createKey(c *fiber.Ctx) error {
	var req struct {
		Name   string   `json:"name"`
		Scopes []string `json:"scopes"`
	}
	if err := c.BodyParser(&req); err != nil {
		return errs.Invalid("body must be JSON {name, scopes}")
	}
	req.Name = strings.TrimSpace(req.Name)
	if req.Name == "" || len(req.Name) > 100 {
		return errs.Invalid("name must be 1..100 characters")
	}
	if len(req.Scopes) == 0 {
		req.Scopes = []string{keyauth.ScopeWrite}
	}
	for _, s := range req.Scopes {
		if s != keyauth.ScopeWrite && s != keyauth.ScopeRead {
			return errs.Invalid("scopes may be %s and %s", keyauth.ScopeWrite, keyauth.ScopeRead)
		}
	}
	user, org := c.Locals(localUser).(store.User), c.Locals(localOrg).(store.Org)
	secret := store.NewKey()
	ctx, cancel := context.WithTimeout(c.UserContext(), dbTimeout)
	defer cancel()
	k, err := d.st.CreateAPIKey(ctx, store.APIKey{OrgID: org.ID, CreatedBy: user.ID, Name: req.Name, Prefix: store.VisiblePrefix(secret), Scopes: req.Scopes}, store.HashKey(secret))
	if err != nil {
		return errs.Unavailable("database_unavailable", "cannot create the key now").WithCause(err)
	}
	d.log.Info("api key created from the dashboard", "key_id", k.ID, "org_id", org.ID, "user_id", user.ID)
	return c.Status(http.StatusCreated).JSON(fiber.Map{"key": toKeyJSON(k), "secret": secret})
}

func (d *Dashboard) revokeKey(c *fiber.Ctx) error {
	user, org := c.Locals(localUser).(store.User), c.Locals(localOrg).(store.Org)
	ctx, cancel := context.WithTimeout(c.UserContext(), dbTimeout)
	defer cancel()
	// Members revoke the keys they made; owners and admins any of the org's.
	by := user.ID
	if user.Role == "owner" || user.Role == "admin" {
		by = ""
	}
	err := d.st.RevokeOrgKey(ctx, org.ID, c.Params("id"), by)
	if errors.Is(err, store.ErrNotFound) {
		return errs.NotFound("key_not_found", "no live key %q in this org", c.Params("id"))
	}
	if errors.Is(err, store.ErrForbidden) {
		return errs.New(errs.KindForbidden, "forbidden", "only the org's owners and admins revoke keys others made")
	}
	if err != nil {
		return errs.Unavailable("database_unavailable", "cannot revoke the key now").WithCause(err)
	}
	d.log.Info("api key revoked from the dashboard", "key_id", c.Params("id"), "org_id", org.ID, "user_id", user.ID)
	return c.SendStatus(http.StatusNoContent)
}

func (d *Dashboard) setCookie(c *fiber.Ctx, name, value string, ttl time.Duration) {
	c.Cookie(&fiber.Cookie{Name: name, Value: value, Path: "/", MaxAge: int(ttl.Seconds()), Expires: time.Now().Add(ttl),
		HTTPOnly: true, Secure: d.secure, SameSite: fiber.CookieSameSiteLaxMode})
}

func (d *Dashboard) clearCookie(c *fiber.Ctx, name string) {
	c.Cookie(&fiber.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, Expires: time.Unix(0, 0),
		HTTPOnly: true, Secure: d.secure, SameSite: fiber.CookieSameSiteLaxMode})
}

// randomToken is 256 random bits, URL-safe.
func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
