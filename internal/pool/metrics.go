package pool

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/grokproxy/grokproxy/internal/store"
)

// gaugeStatuses are the status labels of grokproxy_active_sessions. A
// resting session counts as healthy and also as resting.
var gaugeStatuses = []string{
	store.StatusHealthy, statusResting, store.StatusQuarantined, store.StatusExpired, store.StatusRevoked,
}

type metrics struct {
	active    *prometheus.GaugeVec   // provider, status
	rotations *prometheus.CounterVec // reason
	circuit   *prometheus.GaugeVec   // provider
	egress    *prometheus.GaugeVec   // provider, egress
}

// newMetrics registers the pool's metrics on reg, or on nothing when reg is
// nil, and initialises every rotation reason at zero.
func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "grokproxy_active_sessions",
			Help: "Sessions in the pool by provider and status; resting sessions count as healthy and as resting.",
		}, []string{"provider", "status"}),
		rotations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grokproxy_session_rotations_total",
			Help: "Session status changes and rests, by reason.",
		}, []string{"reason"}),
		circuit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "grokproxy_circuit_state",
			Help: "Circuit breaker state per provider: 0 closed, 1 half-open, 2 open.",
		}, []string{"provider"}),
		egress: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "grokproxy_egress_circuit_state",
			Help: "Circuit breaker state per outbound route, counting anti-bot rejections: 0 closed, 1 half-open, 2 open.",
		}, []string{"provider", "egress"}),
	}
	if reg != nil {
		reg.MustRegister(m.active, m.rotations, m.circuit, m.egress)
	}
	for _, r := range Reasons {
		m.rotations.WithLabelValues(r)
	}
	return m
}

func (m *metrics) setCircuit(provider, state string) {
	m.circuit.WithLabelValues(provider).Set(circuitValue(state))
}

func (m *metrics) setEgress(provider, egress, state string) {
	m.egress.WithLabelValues(provider, egress).Set(circuitValue(state))
}

func circuitValue(state string) float64 {
	switch state {
	case CircuitHalfOpen:
		return 1
	case CircuitOpen:
		return 2
	}
	return 0
}

// refreshGauges recounts the sessions of every known provider. It locks
// each entry in turn, so the caller holds no entry's lock.
func (p *Pool) refreshGauges(now time.Time) {
	p.gaugeMu.Lock()
	defer p.gaugeMu.Unlock()
	r := p.roster.Load()
	for provider := range r.circuits {
		counts := make(map[string]int, len(gaugeStatuses))
		for _, e := range r.byProvider[provider] {
			e.mu.Lock()
			counts[e.s.Status]++
			if e.resting(now) {
				counts[statusResting]++
			}
			e.mu.Unlock()
		}
		for _, status := range gaugeStatuses {
			p.metrics.active.WithLabelValues(provider, status).Set(float64(counts[status]))
		}
	}
}

// settleGauges refreshes the gauges if a status changed since the last
// refresh. Call it after letting go of the entry whose status changed.
func (p *Pool) settleGauges(now time.Time) {
	if p.gaugesStale.CompareAndSwap(true, false) {
		p.refreshGauges(now)
	}
}
