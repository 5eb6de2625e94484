package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Benchmarks of the per-request path with the memory store, the handler
// called as Caddy calls it. The "upstream" is a handler that answers at
// once, so the figures are the gateway's own cost. Targets (README): the
// unchanged case at most 5 µs and 30 allocations.

func benchHandler(b *testing.B) *Handler {
	h := &Handler{Secrets: []string{testSecret}}
	ctx := caddyCtx(b)
	if err := h.Provision(ctx); err != nil {
		b.Fatal(err)
	}
	if err := h.Validate(); err != nil {
		b.Fatal(err)
	}
	return h
}

// serve runs one request through h and the given upstream behaviour.
func serve(b *testing.B, h *Handler, cookie string, next caddyhttp.HandlerFunc) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, "http://example.com/page", nil)
	req.Header.Set("Accept", "text/html")
	req.Header.Set("User-Agent", "bench")
	if cookie != "" {
		req.Header.Set("Cookie", "theme=dark; "+cookie)
	}
	repl := caddy.NewReplacer()
	req = req.WithContext(context.WithValue(req.Context(), caddy.ReplacerCtxKey, repl))
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, req, next); err != nil {
		b.Fatal(err)
	}
	return w
}

func upstreamOK(w http.ResponseWriter, _ *http.Request) error {
	w.WriteHeader(http.StatusOK)
	return nil
}

func upstreamPatch(w http.ResponseWriter, _ *http.Request) error {
	w.Header().Set("X-Session-Patch", `{"n":2}`)
	w.WriteHeader(http.StatusOK)
	return nil
}

func benchCookie(b *testing.B, h *Handler) string {
	w := serve(b, h, "", func(w http.ResponseWriter, _ *http.Request) error {
		w.Header().Set("X-Session-Update", `{"user":{"id":42,"name":"Ann"},"n":1}`)
		w.WriteHeader(http.StatusOK)
		return nil
	})
	c := w.Result().Cookies()
	if len(c) != 1 {
		b.Fatal("no session cookie")
	}
	return c[0].Name + "=" + c[0].Value
}

func BenchmarkNoCookie(b *testing.B) {
	h := benchHandler(b)
	b.ReportAllocs()
	for b.Loop() {
		serve(b, h, "", upstreamOK)
	}
}

func BenchmarkValidCookieUnchanged(b *testing.B) {
	h := benchHandler(b)
	cookie := benchCookie(b, h)
	b.ReportAllocs()
	for b.Loop() {
		serve(b, h, cookie, upstreamOK)
	}
}

func BenchmarkValidCookiePatch(b *testing.B) {
	h := benchHandler(b)
	cookie := benchCookie(b, h)
	b.ReportAllocs()
	for b.Loop() {
		serve(b, h, cookie, upstreamPatch)
	}
}

// BenchmarkBaseline is the request set-up alone (request, recorder,
// replacer) with no session handler: subtract it from the others.
func BenchmarkBaseline(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodGet, "http://example.com/page", nil)
		req.Header.Set("Accept", "text/html")
		req.Header.Set("User-Agent", "bench")
		req.Header.Set("Cookie", "theme=dark")
		repl := caddy.NewReplacer()
		req = req.WithContext(context.WithValue(req.Context(), caddy.ReplacerCtxKey, repl))
		w := httptest.NewRecorder()
		_ = upstreamOK(w, req)
	}
}
