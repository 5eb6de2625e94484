package mongodbstore

import (
	"errors"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// sealFailures counts sessions read as no session because of their seal
// (docs/operations.md), process-wide so the counts survive reloads.
var sealFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
	Namespace: "caddy", Subsystem: "session", Name: "seal_failures_total",
	Help: "Sessions read as no session because of their seal, by store and kind: unknown_key (sealed under a key no longer configured), unopenable (tampered with, moved, truncated), unsealed (refused by require_sealed).",
}, []string{"store", "kind"})

// sealKinds are the kind label's values, so every series exists at 0.
var sealKinds = []string{"unknown_key", "unopenable", "unsealed"}

// sealMetricsInit guards the series created at 0 per store name.
var sealMetricsInit sync.Map

// registerSealMetrics registers sealFailures in the config's registry
// (once: a second registration of the same collector is fine) and
// creates the store's series at 0.
func registerSealMetrics(ctx caddy.Context, store string) {
	if _, done := sealMetricsInit.LoadOrStore(store, true); !done {
		for _, k := range sealKinds {
			sealFailures.WithLabelValues(store, k)
		}
	}
	reg := ctx.GetMetricsRegistry()
	if reg == nil {
		return
	}
	if err := reg.Register(sealFailures); err != nil {
		var dup prometheus.AlreadyRegisteredError
		if !errors.As(err, &dup) {
			ctx.Logger().Warn("seal failure metric not registered", zap.Error(err))
		}
	}
}
