package caddymodule

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/sessiongate/caddy-session/cookie"
	"github.com/sessiongate/caddy-session/store"
)

func init() {
	caddy.RegisterModule(adminSessions{})
}

// adminSessions is the admin API module admin.api.session: it lists and
// ends sessions of the running config's session stores, on Caddy's admin
// endpoint (localhost:2019 by default, and only as exposed as that is).
//
//	GET    /session/subjects/<subject>   the subject's live sessions
//	DELETE /session/subjects/<subject>   end all of them
//	DELETE /session/sessions/<handle>    end one session by its handle
//	POST   /session/reseal               reseal one batch (reseal.go)
//
// <subject> is URL-decoded (a "/" in it is written %2F, a "." may be
// written %2E so "." and ".." survive path cleaning) and spelled as
// store.CanonicalSubject spells it: a string subject as it is, the number
// 42 as %0042 (NUL, then its JSON text), true as %00true; at most
// store.MaxSubjectLen bytes, the longest a session can carry. <handle> is the
// 12 lower-case hex digits of X-Session-Meta's id. ?store=<name> limits
// the call to the stores of that name (a memory store's name, a MongoDB
// store's database.collection). Answers never hold a token or data.
type adminSessions struct {
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (adminSessions) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.session",
		New: func() caddy.Module { return new(adminSessions) },
	}
}

// Provision sets up the logger. The stores are looked up on each call:
// the admin endpoint is provisioned before the config's apps.
func (a *adminSessions) Provision(caddy.Context) error {
	a.logger = caddy.Log().Named("admin.api.session")
	return nil
}

// Routes returns the routes under /session/.
func (a *adminSessions) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/session/", Handler: caddy.AdminHandlerFunc(a.serve)}}
}

// adminSummary is one session in a subject listing.
type adminSummary struct {
	ID      string `json:"id"`
	Created int64  `json:"created"`
	Updated int64  `json:"updated"`
	Expires int64  `json:"expires"`
	// The devices endpoint's fields (devices.go): last_seen is updated.
	LastSeen  int64  `json:"last_seen"`
	UserAgent string `json:"user_agent"`
	IP        string `json:"ip"`
}

// adminRevoked is the answer to a DELETE.
type adminRevoked struct {
	Revoked int `json:"revoked"`
}

func (a *adminSessions) serve(w http.ResponseWriter, r *http.Request) error {
	rest := strings.TrimPrefix(r.URL.EscapedPath(), "/session/")
	kind, arg, _ := strings.Cut(rest, "/")
	var (
		result any
		err    error
	)
	switch kind {
	case "subjects":
		result, err = a.serveSubject(r, arg)
	case "sessions":
		result, err = a.serveHandle(r, arg)
	case "jwks":
		result, err = serveJWKS(r, arg)
	case "reseal":
		result, err = a.serveReseal(r, arg)
	default:
		return apiError(http.StatusNotFound, "unknown session API path %q: use /session/subjects/<subject>, /session/sessions/<handle>, /session/jwks or /session/reseal", r.URL.Path)
	}
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(result)
}

// serveJWKS answers GET /session/jwks with the key set session_jwks
// serves.
func serveJWKS(r *http.Request, arg string) (any, error) {
	if arg != "" || strings.HasSuffix(r.URL.EscapedPath(), "/") {
		return nil, apiError(http.StatusNotFound, "unknown session API path %q: use /session/jwks", r.URL.Path)
	}
	if r.Method != http.MethodGet {
		return nil, methodNotAllowed(r, "GET")
	}
	return keySet(), nil
}

func (a *adminSessions) serveSubject(r *http.Request, escaped string) (any, error) {
	if r.Method != http.MethodGet && r.Method != http.MethodDelete {
		return nil, methodNotAllowed(r, "GET, DELETE")
	}
	subject, err := url.PathUnescape(escaped)
	switch {
	case err != nil:
		return nil, apiError(http.StatusBadRequest, "subject is not validly URL-encoded: %v", err)
	case subject == "":
		return nil, apiError(http.StatusBadRequest, "subject is empty: use /session/subjects/<subject>")
	case len(subject) > store.MaxSubjectLen:
		return nil, apiError(http.StatusBadRequest, "subject is longer than %d bytes, the most a session can carry", store.MaxSubjectLen)
	case !utf8.ValidString(subject):
		return nil, apiError(http.StatusBadRequest, "subject is not valid UTF-8")
	}
	stores, err := indexedStores(r)
	if err != nil {
		return nil, err
	}
	if r.Method == http.MethodGet {
		return listSubject(r.Context(), stores, subject)
	}
	n := 0
	for _, ls := range stores {
		k, err := ls.idx.DeleteBySubject(r.Context(), subject, "")
		n += k
		if err != nil {
			return nil, storeAPIError(ls, err)
		}
	}
	a.logger.Info("sessions of a subject revoked through the admin API", zap.Int("revoked", n))
	return adminRevoked{Revoked: n}, nil
}

func (a *adminSessions) serveHandle(r *http.Request, handle string) (any, error) {
	if r.Method != http.MethodDelete {
		return nil, methodNotAllowed(r, "DELETE")
	}
	if !cookie.IsHandle(handle) {
		return nil, apiError(http.StatusBadRequest, "session handle must be exactly 12 lower-case hex digits (the id in X-Session-Meta), got %q", handle)
	}
	stores, err := indexedStores(r)
	if err != nil {
		return nil, err
	}
	n := 0
	for _, ls := range stores {
		k, err := ls.idx.DeleteByHandle(r.Context(), handle)
		n += k
		if err != nil {
			return nil, storeAPIError(ls, err)
		}
	}
	a.logger.Info("session revoked through the admin API", zap.String("session", handle), zap.Int("revoked", n))
	return adminRevoked{Revoked: n}, nil
}

// listSubject gathers the subject's live sessions from every store,
// oldest first.
func listSubject(ctx context.Context, stores []*storeInUse, subject string) ([]adminSummary, error) {
	list := []adminSummary{}
	now := time.Now()
	for _, ls := range stores {
		found, err := ls.idx.FindBySubject(ctx, subject, now)
		if err != nil {
			return nil, storeAPIError(ls, err)
		}
		for _, s := range found {
			list = append(list, adminSummary{
				ID: s.Handle, Created: s.Created.Unix(), Updated: s.Updated.Unix(), Expires: s.Expires.Unix(),
				LastSeen: s.Updated.Unix(), UserAgent: s.UserAgent, IP: s.Addr,
			})
		}
	}
	slices.SortFunc(list, func(a, b adminSummary) int {
		return cmp.Or(cmp.Compare(a.Created, b.Created), strings.Compare(a.ID, b.ID))
	})
	return list, nil
}

// indexedStores returns the running config's stores that have a subject
// index, limited to ?store=<name> when given.
func indexedStores(r *http.Request) ([]*storeInUse, error) {
	name := r.URL.Query().Get("store")
	all := storesInUse(name)
	var stores []*storeInUse
	for _, ls := range all {
		if ls.idx != nil {
			stores = append(stores, ls)
		}
	}
	switch {
	case len(stores) > 0:
		return stores, nil
	case name != "" && len(all) == 0:
		return nil, apiError(http.StatusNotFound, "no session store named %q in the running config", name)
	case len(all) == 0 && name == "":
		return nil, apiError(http.StatusNotFound, "no session handler in the running config")
	}
	return nil, apiError(http.StatusNotFound, "no session store in the running config can find sessions by subject (the memory and mongodb stores can)")
}

func apiError(status int, format string, args ...any) error {
	return caddy.APIError{HTTPStatus: status, Err: fmt.Errorf(format, args...)}
}

func methodNotAllowed(r *http.Request, allow string) error {
	return caddy.APIError{
		HTTPStatus: http.StatusMethodNotAllowed,
		Err:        fmt.Errorf("method %s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, allow),
	}
}

// storeAPIError turns a store failure into 503 (unreachable or timed
// out) or 500.
func storeAPIError(ls *storeInUse, err error) error {
	return caddy.APIError{HTTPStatus: storeStatus(err), Err: fmt.Errorf("session store %s: %w", ls.name, err)}
}

// Interface guards.
var (
	_ caddy.Provisioner = (*adminSessions)(nil)
	_ caddy.AdminRouter = (*adminSessions)(nil)
)
