package observe

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/grokproxy/grokproxy/internal/upstream"
)

// Metrics are the request-path metrics. Pool, audit and rate-limit metrics
// are registered by their own packages on the same registry.
type Metrics struct {
	Requests          *prometheus.CounterVec   // route, status
	RequestDuration   *prometheus.HistogramVec // route
	GenerationLatency *prometheus.HistogramVec // model, provider
	TimeToFirstToken  *prometheus.HistogramVec // model, provider
	UpstreamOutcomes  *prometheus.CounterVec   // provider, outcome
	RateLimited       *prometheus.CounterVec   // scope
	InFlight          prometheus.Gauge
}

// Routes are the route labels of grokproxy_requests_total.
var Routes = []string{
	"chat_completions", "models", "model", "images", "image_file", "admin", "health", "metrics", "console", "not_found",
}

// RateLimitScopes are the scope labels of grokproxy_ratelimit_rejections_total.
var RateLimitScopes = []string{"user", "key_concurrency", "session", "auth_failures", "overload", "audit_spool"}

// NewRegistry returns a registry with the Go runtime and process
// collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// NewMetrics registers the request-path metrics on reg and initialises the
// known label values at zero, so every family has a sample from the start.
func NewMetrics(reg prometheus.Registerer, models []string) *Metrics {
	latencyBuckets := []float64{.05, .1, .25, .5, 1, 2, 5, 10, 20, 40, 80, 160}
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grokproxy_requests_total",
			Help: "HTTP requests answered, by route and status code.",
		}, []string{"route", "status"}),
		RequestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "grokproxy_request_duration_seconds",
			Help:    "Time from request start to the last byte sent, by route.",
			Buckets: latencyBuckets,
		}, []string{"route"}),
		GenerationLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "grokproxy_generation_latency_seconds",
			Help:    "Time to generate a whole answer, by public model and provider.",
			Buckets: latencyBuckets,
		}, []string{"model", "provider"}),
		TimeToFirstToken: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "grokproxy_time_to_first_token_seconds",
			Help:    "Time from request start to the first answer token sent, by public model and provider.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2, 5, 10, 30},
		}, []string{"model", "provider"}),
		UpstreamOutcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grokproxy_upstream_requests_total",
			Help: "Upstream calls by provider and outcome (ok, rate_limited, unauthorized, blocked, egress_rejected, unavailable, broken_stream, rejected_request, canceled).",
		}, []string{"provider", "outcome"}),
		RateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grokproxy_ratelimit_rejections_total",
			Help: "Requests refused by a limit, by scope.",
		}, []string{"scope"}),
		InFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "grokproxy_requests_in_flight",
			Help: "Requests being served now.",
		}),
	}
	reg.MustRegister(m.Requests, m.RequestDuration, m.GenerationLatency, m.TimeToFirstToken,
		m.UpstreamOutcomes, m.RateLimited, m.InFlight)
	for _, r := range Routes {
		m.RequestDuration.WithLabelValues(r)
		m.Requests.WithLabelValues(r, "200")
	}
	for _, p := range []string{"grok", "xai"} {
		for _, o := range upstream.Outcomes {
			m.UpstreamOutcomes.WithLabelValues(p, string(o))
		}
		for _, model := range models {
			m.GenerationLatency.WithLabelValues(model, p)
			m.TimeToFirstToken.WithLabelValues(model, p)
		}
	}
	for _, s := range RateLimitScopes {
		m.RateLimited.WithLabelValues(s)
	}
	return m
}
