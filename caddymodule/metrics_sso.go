package caddymodule

import (
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// bcOutcome is how a back-channel logout request turned out
// (caddy_session_backchannel_logouts_total{outcome}).
type bcOutcome uint8

const (
	bcEnded       bcOutcome = iota // a valid token: its sessions ended (maybe none)
	bcRefused                      // 400: the token was refused
	bcUnavailable                  // 503 or 500: the IdP or the store could not be reached
	numBCOutcomes
)

var bcOutcomeNames = [numBCOutcomes]string{"ok", "refused", "unavailable"}

// ssoCollectors are the single sign-on metric families, made once per
// process like the others (see metrics.go).
var ssoCollectors struct {
	once         sync.Once
	backchannel  *prometheus.CounterVec
	bcOutcomes   [numBCOutcomes]prometheus.Counter
	limitEnded   prometheus.Counter
	deviceEnded  prometheus.Counter
	allCollector []prometheus.Collector
}

func initSSOCollectors() {
	const ns, sub = "caddy", "session"
	c := &ssoCollectors
	c.backchannel = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "backchannel_logouts_total",
		Help: "OpenID Connect back-channel logout requests, by outcome (ok, refused, unavailable).",
	}, []string{"outcome"})
	for i := range numBCOutcomes {
		c.bcOutcomes[i] = c.backchannel.WithLabelValues(bcOutcomeNames[i])
	}
	c.limitEnded = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "limit_ended_total",
		Help: "Sessions ended by max_sessions_per_subject.",
	})
	c.deviceEnded = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "device_revokes_total",
		Help: "Sessions ended by their user from the devices endpoint.",
	})
	c.allCollector = []prometheus.Collector{c.backchannel, c.limitEnded, c.deviceEnded}
}

// registerSSOMetrics registers the single sign-on metrics in the config's
// registry.
func registerSSOMetrics(ctx caddy.Context) error {
	ssoCollectors.once.Do(initSSOCollectors)
	reg := ctx.GetMetricsRegistry()
	if reg == nil {
		return nil
	}
	for _, c := range ssoCollectors.allCollector {
		if err := register(reg, c); err != nil {
			return err
		}
	}
	return nil
}

// backchannel counts a back-channel logout request.
func (m *sessionMetrics) backchannel(o bcOutcome) {
	if m != nil && ssoCollectors.backchannel != nil {
		ssoCollectors.bcOutcomes[o].Inc()
	}
}

// limitEnded counts sessions ended by max_sessions_per_subject.
func (m *sessionMetrics) limitEnded(n int) {
	if m != nil && ssoCollectors.limitEnded != nil {
		ssoCollectors.limitEnded.Add(float64(n))
	}
}

// deviceRevoked counts a session ended from the devices endpoint.
func (m *sessionMetrics) deviceRevoked() {
	if m != nil && ssoCollectors.deviceEnded != nil {
		ssoCollectors.deviceEnded.Inc()
	}
}
