package caddymodule

import (
	"errors"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessiongate/caddy-session/cookie"
)

// The gateway's Prometheus metrics. They appear on Caddy's /metrics
// (admin endpoint, or the metrics handler) because every session handler
// registers them in its config's registry (ctx.GetMetricsRegistry()).
//
// The collectors are made once per process and registered in each
// config's registry: a reload gets a new registry, so the same collectors
// are registered again there (no duplicate-registration panic), and the
// counters keep counting across reloads as Prometheus expects. Every label
// value is known in advance, so the series are made once, here, and the
// request path only adds to a prebuilt counter (an atomic add).

// requestOutcome is how a request's session cookie turned out
// (caddy_session_requests_total{outcome}).
type requestOutcome uint8

const (
	outcomeNone        requestOutcome = iota // no session cookie
	outcomeValid                             // a signed cookie naming a live session
	outcomeInvalid                           // a cookie whose signature does not verify
	outcomeExpired                           // a signed cookie whose session is gone (expired, ended or rotated)
	outcomeAmbiguous                         // several session cookies, none chosen
	outcomeSkipped                           // the handler's matcher did not select the request
	outcomeCrossOrigin                       // refused 403: unsafe, cross-origin, with the cookie
	outcomeTooEarly                          // refused 425: unsafe, in TLS early data, with the cookie
	outcomeError                             // the session could not be loaded: the store failed (503 or 500)
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"none", "valid", "invalid", "expired", "ambiguous", "skipped", "cross_origin", "too_early", "error"}

// writeOp is a session write the gateway made for an upstream
// (caddy_session_writes_total{op}).
type writeOp uint8

const (
	writeCreate     writeOp = iota // a new session
	writeUpdate                    // changed data or max-age
	writeTouch                     // idle expiry extended
	writeRegenerate                // same session, new token
	writeDestroy                   // session ended by the upstream
	writeRevoke                    // revoke-others or revoke-all
	writeAdopt                     // a session adopted from another system
	numWriteOps
)

var writeOpNames = [numWriteOps]string{"create", "update", "touch", "regenerate", "destroy", "revoke", "adopt"}

// refusal is why the gateway refused an upstream's session headers with
// 502 (caddy_session_upstream_refused_total{reason}).
type refusal uint8

const (
	refusedJSON      refusal = iota // malformed JSON, not an object, too deep, a forbidden key or number
	refusedSize                     // over max_update_size
	refusedControl                  // an unknown or contradictory X-Session-Control directive
	refusedSubject                  // revoke-others/revoke-all without a subject
	refusedOther                    // anything else
	refusedForbidden                // a change or directive outside the handler's write or control
	numRefusals
)

var refusalNames = [numRefusals]string{"json", "size", "control", "subject", "other", "forbidden"}

// storeOp is a store call timed by instrumentedStore
// (caddy_session_store_duration_seconds{store,op}).
type storeOp uint8

const (
	storeFind storeOp = iota
	storeCreate
	storeUpdate
	storeTouch
	storeRotate
	storeDelete
	storeFindBySubject
	storeDeleteBySubject
	storeDeleteByHandle
	numStoreOps
)

var storeOpNames = [numStoreOps]string{
	"find", "create", "update", "touch", "rotate", "delete",
	"find_by_subject", "delete_by_subject", "delete_by_handle",
}

// sessionMetrics holds the handler's prebuilt counters, one per label
// value. Its methods are safe on a nil receiver, so a Handler that was
// never provisioned (unit tests) counts nothing.
type sessionMetrics struct {
	requests [numOutcomes]prometheus.Counter
	writes   [numWriteOps]prometheus.Counter
	refused  [numRefusals]prometheus.Counter
}

// request counts a request by how its session cookie turned out.
func (m *sessionMetrics) request(o requestOutcome) {
	if m != nil {
		m.requests[o].Inc()
	}
}

// write counts a session write made for an upstream.
func (m *sessionMetrics) write(op writeOp) {
	if m != nil {
		m.writes[op].Inc()
	}
}

// refuse counts an upstream answer refused with 502.
func (m *sessionMetrics) refuse(r refusal) {
	if m != nil {
		m.refused[r].Inc()
	}
}

// collectors are the process-wide metric families.
var collectors struct {
	once          sync.Once
	requests      *prometheus.CounterVec
	writes        *prometheus.CounterVec
	refused       *prometheus.CounterVec
	storeDuration *prometheus.HistogramVec
	storeErrors   *prometheus.CounterVec
	active        *activeCollector
	hot           sessionMetrics
}

// storeDurationBuckets span a memory store (microseconds) to a MongoDB
// write with majority concern across zones (tens of milliseconds) and a
// request hitting the store timeout (seconds).
var storeDurationBuckets = []float64{.0001, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1, 5}

func initCollectors() {
	const ns, sub = "caddy", "session"
	c := &collectors
	c.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "requests_total",
		Help: "Requests through a session handler, by how their session cookie turned out.",
	}, []string{"outcome"})
	c.writes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "writes_total",
		Help: "Session writes made for upstreams, by operation.",
	}, []string{"op"})
	c.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "upstream_refused_total",
		Help: "Upstream responses whose session headers were refused (502), by reason.",
	}, []string{"reason"})
	c.storeDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: ns, Subsystem: sub, Name: "store_duration_seconds",
		Help:    "Time taken by session store calls, by store and operation.",
		Buckets: storeDurationBuckets,
	}, []string{"store", "op"})
	c.storeErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "store_errors_total",
		Help: "Session store calls that failed (not counting not-found, exists, conflict or rotated answers), by store and operation.",
	}, []string{"store", "op"})
	c.active = newActiveCollector(ns, sub)
	for i := range numOutcomes {
		c.hot.requests[i] = c.requests.WithLabelValues(outcomeNames[i])
	}
	for i := range numWriteOps {
		c.hot.writes[i] = c.writes.WithLabelValues(writeOpNames[i])
	}
	for i := range numRefusals {
		c.hot.refused[i] = c.refused.WithLabelValues(refusalNames[i])
	}
}

// provisionMetrics registers the session metrics in the config's registry
// (once per registry; later calls find them registered) and returns the
// handler's prebuilt counters.
func provisionMetrics(ctx caddy.Context) (*sessionMetrics, error) {
	collectors.once.Do(initCollectors)
	reg := ctx.GetMetricsRegistry()
	if reg == nil {
		return &collectors.hot, nil
	}
	for _, c := range []prometheus.Collector{
		collectors.requests, collectors.writes, collectors.refused,
		collectors.storeDuration, collectors.storeErrors, collectors.active,
	} {
		if err := register(reg, c); err != nil {
			return nil, err
		}
	}
	return &collectors.hot, nil
}

// register adds c to reg unless it is there already (a second session
// handler in the same config).
func register(reg prometheus.Registerer, c prometheus.Collector) error {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) && are.ExistingCollector == c {
		return nil
	}
	return err
}

// storeObservers returns the prebuilt duration observers and error
// counters of one store, by operation.
func storeObservers(name string) (obs [numStoreOps]prometheus.Observer, errs [numStoreOps]prometheus.Counter) {
	collectors.once.Do(initCollectors)
	for i := range numStoreOps {
		obs[i] = collectors.storeDuration.WithLabelValues(name, storeOpNames[i])
		errs[i] = collectors.storeErrors.WithLabelValues(name, storeOpNames[i])
	}
	return obs, errs
}

// activeCollector reports caddy_session_active{store}: the sessions held
// by each store in use that can count them cheaply (the memory store). It
// reads the stores in use at scrape time, so it follows reloads.
//
// The MongoDB store reports nothing here on purpose: its only cheap count
// (estimatedDocumentCount) includes expired sessions that the TTL monitor
// has not removed yet and regenerate tombstones, an exact count of live
// sessions is an index scan per scrape, and every Caddy instance sharing
// the collection would report the same number, so sum() over instances
// would multiply it. MongoDB's own monitoring counts the collection.
//
// It also reports caddy_session_evictions_total{store,class}: the
// sessions a full memory store evicted, class "anonymous" (no subject, not
// created by a login; ended tombstones too) or "logged_in". The store
// counts them since it was made, so the counter survives reloads as the
// pooled store does.
type activeCollector struct {
	desc      *prometheus.Desc
	evictions *prometheus.Desc
}

func newActiveCollector(ns, sub string) *activeCollector {
	return &activeCollector{
		desc: prometheus.NewDesc(
			prometheus.BuildFQName(ns, sub, "active"),
			"Records held by a memory store: live sessions, plus expired sessions and regenerate tombstones not yet swept.",
			[]string{"store"}, nil),
		evictions: prometheus.NewDesc(
			prometheus.BuildFQName(ns, sub, "evictions_total"),
			"Sessions a full memory store evicted, by class: anonymous (evicted first) or logged_in (a subject, or created by a login).",
			[]string{"store", "class"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *activeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.desc
	ch <- c.evictions
}

// Collect implements prometheus.Collector.
func (c *activeCollector) Collect(ch chan<- prometheus.Metric) {
	for _, ls := range storesInUse("") {
		if ls.size != nil {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(ls.size()), ls.name)
		}
		if ls.evictions != nil {
			anon, users := ls.evictions()
			ch <- prometheus.MustNewConstMetric(c.evictions, prometheus.CounterValue, float64(anon), ls.name, "anonymous")
			ch <- prometheus.MustNewConstMetric(c.evictions, prometheus.CounterValue, float64(users), ls.name, "logged_in")
		}
	}
}

// requestOutcomeOf is the metrics outcome of a request whose cookies
// were o; loaded says whether a live session was loaded for a valid one.
func requestOutcomeOf(o cookie.Outcome, loaded bool) requestOutcome {
	switch o {
	case cookie.OutcomeValid:
		if loaded {
			return outcomeValid
		}
		return outcomeExpired
	case cookie.OutcomeInvalid:
		return outcomeInvalid
	case cookie.OutcomeAmbiguous:
		return outcomeAmbiguous
	}
	return outcomeNone
}
