package caddymodule

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	// The store modules, as the root package registers them: the tests
	// load configs that name them (and the default store, memory).
	_ "github.com/sessiongate/caddy-session/caddymodule/memorystore"
	_ "github.com/sessiongate/caddy-session/caddymodule/mongodbstore"
	"github.com/sessiongate/caddy-session/internal/mongotest"
)

// TestMain routes the package's tests through mongotest so the MongoDB
// tests share one server (FerretDB unless MONGODB_URI is set), started
// only if a test asks for it.
//
// With CADDY_SESSION_TEST_CADDY=1 the binary is a second Caddy process
// for TestMongoGatewayTwoProcesses instead (see mongo_gateway_test.go).
func TestMain(m *testing.M) {
	maybeRunTestCaddy()
	mongotest.Main(m)
}

// testSkew is how far skew has moved the handlers' clock.
var testSkew atomic.Int64

func init() {
	// Before any handler runs, so no request races the assignment.
	clock = func() time.Time { return time.Now().Add(time.Duration(testSkew.Load())) }
}

// skew moves the clock of every session handler in this process forward
// by d for the rest of the test.
func skew(t testing.TB, d time.Duration) {
	testSkew.Add(int64(d))
	t.Cleanup(func() { testSkew.Add(-int64(d)) })
}

// runningHandlers returns the session handlers of the running config, found
// through its HTTP app's routes (subroutes included).
func runningHandlers() []*Handler {
	ctx := caddy.ActiveContext()
	if ctx.Context == nil {
		return nil
	}
	app, err := ctx.App("http")
	if err != nil {
		return nil
	}
	httpApp, ok := app.(*caddyhttp.App)
	if !ok {
		return nil
	}
	var out []*Handler
	for _, srv := range httpApp.Servers {
		out = appendHandlers(out, srv.Routes)
	}
	return out
}

// appendHandlers appends the session handlers of routes, and of their
// subroutes, to out.
func appendHandlers(out []*Handler, routes caddyhttp.RouteList) []*Handler {
	for _, r := range routes {
		for _, mh := range r.Handlers {
			switch h := mh.(type) {
			case *Handler:
				out = append(out, h)
			case *caddyhttp.Subroute:
				out = appendHandlers(out, h.Routes)
			}
		}
	}
	return out
}
