package caddymodule

import (
	"cmp"
	"encoding/json"
	"net/http"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/sessiongate/caddy-session/cookie"
	"github.com/sessiongate/caddy-session/store"
)

// deviceJSON is one session in the devices listing, and in the admin
// API's subject listing.
type deviceJSON struct {
	ID        string `json:"id"`
	Current   bool   `json:"current"`
	Created   int64  `json:"created"`
	LastSeen  int64  `json:"last_seen"`
	Expires   int64  `json:"expires"`
	UserAgent string `json:"user_agent"`
	IP        string `json:"ip"`
}

// devicesOf turns summaries into the listing, newest first; current is
// the handle of the caller's session ("" for the admin API).
func devicesOf(list []store.Summary, current string) []deviceJSON {
	list = slices.Clone(list)
	slices.SortFunc(list, func(a, b store.Summary) int {
		return cmp.Or(b.Created.Compare(a.Created), strings.Compare(a.Handle, b.Handle))
	})
	out := make([]deviceJSON, 0, len(list))
	for _, s := range list {
		out = append(out, deviceJSON{
			ID: s.Handle, Current: s.Handle == current && current != "",
			Created: s.Created.Unix(), LastSeen: s.Updated.Unix(), Expires: s.Expires.Unix(),
			UserAgent: s.UserAgent, IP: s.Addr,
		})
	}
	return out
}

// devicesID returns the part of r's path after the devices path: "" for
// the listing itself, the id for <path>/<id>; ok is false for any other
// path.
func (h *Handler) devicesID(r *http.Request) (id string, ok bool) {
	if h.Devices == "" {
		return "", false
	}
	p := r.URL.Path
	if p == h.Devices {
		return "", true
	}
	rest, found := strings.CutPrefix(p, h.Devices+"/")
	if !found || rest == "" || strings.Contains(rest, "/") {
		return "", false
	}
	return rest, true
}

// serveDevices answers the devices endpoint for the request's session:
// GET lists the sessions of its subject, DELETE <path>/<id> ends one of
// them. Both need a session with a subject (401), and answer
// Cache-Control: no-store. The cross-origin check has run.
func (h *Handler) serveDevices(w http.ResponseWriter, st *state, id string) error {
	r := st.req
	hdr := w.Header()
	hdr.Set("Cache-Control", "no-store")
	addVary(hdr)
	subject := st.subject()
	if subject == "" {
		return writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "no session with a subject"})
	}
	switch {
	case id == "" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		list, err := h.index.FindBySubject(r.Context(), subject, st.now)
		if err != nil {
			return h.storeError("list devices", st.handle(), err)
		}
		return writeJSON(w, http.StatusOK, devicesOf(list, st.handle()))
	case id != "" && r.Method == http.MethodDelete:
		return h.endDevice(w, st, subject, id)
	}
	allow := "GET, HEAD"
	if id != "" {
		allow = "DELETE"
	}
	hdr.Set("Allow", allow)
	return writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method not allowed"})
}

// endDevice ends the session id of subject. Any id that is not one of
// the subject's live sessions is 404, whether it exists or not.
func (h *Handler) endDevice(w http.ResponseWriter, st *state, subject, id string) error {
	r := st.req
	notFound := map[string]string{"error": "no such device"}
	if !cookie.IsHandle(id) {
		return writeJSON(w, http.StatusNotFound, notFound)
	}
	list, err := h.index.FindBySubject(r.Context(), subject, st.now)
	if err != nil {
		return h.storeError("list devices", st.handle(), err)
	}
	if !slices.ContainsFunc(list, func(s store.Summary) bool { return s.Handle == id }) {
		return writeJSON(w, http.StatusNotFound, notFound)
	}
	n, err := h.index.DeleteByHandle(r.Context(), id)
	if err != nil {
		return h.storeError("end device", st.handle(), err)
	}
	h.metrics.deviceRevoked()
	h.logger.Info("session ended from the devices page", zap.String("session", st.handle()), zap.String("ended", id), zap.Int("revoked", n))
	if id == cookie.Handle(st.key) && st.hadCookie {
		st.setCookie(w.Header(), nil)
	}
	return writeJSON(w, http.StatusOK, map[string]int{"revoked": n})
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, err = w.Write(append(b, '\n'))
	return err
}
