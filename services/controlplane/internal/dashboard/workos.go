package dashboard

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/opensandbox/opensandbox/services/controlplane/internal/store"
)

// WorkOS speaks the parts of WorkOS User Management (AuthKit) that signing
// in needs, over its documented HTTP API: the authorization URL, the code
// exchange and the organization lookup.
type WorkOS struct {
	BaseURL  string // https://api.workos.com
	ClientID string // client_...
	APIKey   string // sk_...: the client secret of the code exchange
	HTTP     *http.Client
}

// How a call to WorkOS can fail besides WorkOS being unreachable or broken:
// the sign-in turned down (a bad or used code, a step AuthKit still wants),
// or our own credentials refused (a configuration fault, not the user's).
var (
	errRefused       = errors.New("WorkOS refused the sign-in")
	errMisconfigured = errors.New("WorkOS refused this server's credentials")
)

// AuthorizeURL is where a browser signs in; WorkOS sends it back to
// redirectURI with a code and the state.
func (w *WorkOS) AuthorizeURL(redirectURI, state string) string {
	q := url.Values{
		"client_id":     {w.ClientID},
		"redirect_uri":  {redirectURI},
		"response_type": {"code"},
		"provider":      {"authkit"},
		"state":         {state},
	}
	return strings.TrimRight(w.BaseURL, "/") + "/user_management/authorize?" + q.Encode()
}

// Authenticate exchanges the code of a sign-in for who signed in.
func (w *WorkOS) Authenticate(ctx context.Context, code, ip, userAgent string) (store.Identity, error) {
	body, _ := json.Marshal(map[string]string{
		"client_id": w.ClientID, "client_secret": w.APIKey, "grant_type": "authorization_code",
		"code": code, "ip_address": ip, "user_agent": userAgent,
	})
	var out struct {
		User struct {
			ID            string  `json:"id"`
			Email         string  `json:"email"`
			EmailVerified bool    `json:"email_verified"`
			FirstName     *string `json:"first_name"`
			LastName      *string `json:"last_name"`
		} `json:"user"`
		OrganizationID string `json:"organization_id"`
	}
	if err := w.do(ctx, http.MethodPost, "/user_management/authenticate", bytes.NewReader(body), false, &out); err != nil {
		var e *apiError
		if errors.As(err, &e) {
			if e.status == http.StatusUnauthorized || e.code == "invalid_client" || e.code == "unauthorized_client" {
				return store.Identity{}, fmt.Errorf("%w: %v", errMisconfigured, e)
			}
			if e.status < 500 && e.status != http.StatusTooManyRequests {
				return store.Identity{}, fmt.Errorf("%w: %v", errRefused, e)
			}
		}
		return store.Identity{}, err
	}
	if out.User.ID == "" || out.User.Email == "" {
		return store.Identity{}, fmt.Errorf("WorkOS answered a sign-in without a user id or email")
	}
	var name []string
	for _, p := range []*string{out.User.FirstName, out.User.LastName} {
		if p != nil && *p != "" {
			name = append(name, *p)
		}
	}
	id := store.Identity{WorkOSUserID: out.User.ID, Email: out.User.Email, EmailVerified: out.User.EmailVerified,
		Name: strings.Join(name, " "), WorkOSOrgID: out.OrganizationID}
	if id.WorkOSOrgID != "" {
		var org struct {
			Name string `json:"name"`
		}
		if err := w.do(ctx, http.MethodGet, "/organizations/"+url.PathEscape(id.WorkOSOrgID), nil, true, &org); err != nil {
			var e *apiError
			if errors.As(err, &e) && e.status == http.StatusUnauthorized {
				err = fmt.Errorf("%w: %v", errMisconfigured, e)
			}
			return store.Identity{}, fmt.Errorf("organization %s: %w", id.WorkOSOrgID, err)
		}
		id.OrgName = org.Name
	}
	return id, nil
}

// do calls WorkOS and decodes its JSON answer into out.
func (w *WorkOS) do(ctx context.Context, method, path string, body io.Reader, bearer bool, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(w.BaseURL, "/")+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer {
		req.Header.Set("Authorization", "Bearer "+w.APIKey)
	}
	client := w.HTTP
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("WorkOS %s: %w", path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("WorkOS %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		// The body says why (invalid_grant, ...); it carries no secret.
		var e struct {
			Error       string `json:"error"`
			Code        string `json:"code"`
			Description string `json:"error_description"`
			Message     string `json:"message"`
		}
		json.Unmarshal(data, &e)
		return &apiError{path: path, status: resp.StatusCode, code: cmp.Or(e.Error, e.Code), message: cmp.Or(e.Description, e.Message)}
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("WorkOS %s: %w", path, err)
	}
	return nil
}

// apiError is a WorkOS answer other than 200.
type apiError struct {
	path          string
	status        int
	code, message string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("WorkOS %s: %d %s %s", e.path, e.status, e.code, e.message)
}
