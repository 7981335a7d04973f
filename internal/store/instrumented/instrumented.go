// Package instrumented wraps a store.Store so that every call is timed and
// counted in Prometheus metrics, and reports the connection pool usage of
// the backend when the backend can tell it.
//
// Metrics, registered on the registry given to New:
//
//	grokproxy_db_query_duration_seconds{op}   histogram of call durations
//	grokproxy_db_query_errors_total{op}       calls that failed, apart from
//	                                          not-found and conflict answers
//	grokproxy_db_operations_in_flight         calls running now
//	grokproxy_db_pool_connections{state}      in_use, idle and max connections
//
// The op label is a fixed snake_case name per Store method, so its values
// are bounded.
package instrumented

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/grokproxy/grokproxy/internal/store"
)

// PoolStater is implemented by a backend that can report its connection
// pool. The map holds the number of connections under the keys "in_use",
// "idle" and "max"; a missing key reads as unknown.
type PoolStater interface {
	PoolStats() map[string]int
}

// Pool states of grokproxy_db_pool_connections.
var PoolStates = []string{"in_use", "idle", "max"}

// Options tune New.
type Options struct {
	// MaxConns is reported as the "max" pool state when the backend does
	// not report its own; 0 leaves it at 0 (unknown).
	MaxConns int
}

// Store is a store.Store that times each call of the Store it wraps. It
// is safe for concurrent use when the wrapped Store is. Methods that the
// wrapped Store gains later pass through untimed until they are added
// here.
type Store struct {
	store.Store

	duration *prometheus.HistogramVec // op
	errors   *prometheus.CounterVec   // op
	inFlight atomic.Int64
}

var _ store.Store = (*Store)(nil)

// New wraps st and registers the store metrics on reg, with every op
// label initialised at zero.
func New(st store.Store, reg prometheus.Registerer, opts Options) *Store {
	s := &Store{
		Store: st,
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "grokproxy_db_query_duration_seconds",
			Help:    "Duration of store calls in seconds, by operation.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"op"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grokproxy_db_query_errors_total",
			Help: "Store calls that failed, by operation; not-found and conflict answers are not failures.",
		}, []string{"op"}),
	}
	for _, op := range Ops {
		s.duration.WithLabelValues(op)
		s.errors.WithLabelValues(op)
	}
	stater, _ := st.(PoolStater)
	reg.MustRegister(s.duration, s.errors,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "grokproxy_db_operations_in_flight",
			Help: "Store calls running now.",
		}, func() float64 { return float64(s.inFlight.Load()) }),
		&poolCollector{s: s, stater: stater, maxConns: opts.MaxConns},
	)
	return s
}

// Unwrap returns the wrapped Store.
func (s *Store) Unwrap() store.Store { return s.Store }

// poolCollector reports grokproxy_db_pool_connections when scraped. A
// backend without PoolStats is reported by its in-flight calls as in_use,
// each of which holds at most one connection, and idle as 0.
type poolCollector struct {
	s        *Store
	stater   PoolStater
	maxConns int
}

var poolDesc = prometheus.NewDesc("grokproxy_db_pool_connections",
	"Store connections by state: in_use, idle, and max (the pool's cap; 0 when unknown).",
	[]string{"state"}, nil)

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) { ch <- poolDesc }

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	stats := map[string]int{"in_use": int(c.s.inFlight.Load()), "idle": 0, "max": c.maxConns}
	if c.stater != nil {
		for k, v := range c.stater.PoolStats() {
			stats[k] = v
		}
	}
	for _, state := range PoolStates {
		ch <- prometheus.MustNewConstMetric(poolDesc, prometheus.GaugeValue, float64(stats[state]), state)
	}
}

// observe runs f as the operation op and records its duration and failure.
func observe[T any](s *Store, op string, f func() (T, error)) (T, error) {
	s.inFlight.Add(1)
	start := time.Now()
	v, err := f()
	s.duration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	s.inFlight.Add(-1)
	if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrConflict) &&
		!errors.Is(err, context.Canceled) {
		s.errors.WithLabelValues(op).Inc()
	}
	return v, err
}

// observeErr is observe for calls that return only an error.
func observeErr(s *Store, op string, f func() error) error {
	_, err := observe(s, op, func() (struct{}, error) { return struct{}{}, f() })
	return err
}
