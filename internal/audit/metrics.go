package audit

import "github.com/prometheus/client_golang/prometheus"

// Results of grokproxy_audit_records_total.
const (
	resultWritten  = "written"
	resultSpooled  = "spooled"
	resultDropped  = "dropped"
	resultRejected = "rejected"
)

type metrics struct {
	records       *prometheus.CounterVec // result
	flushDuration prometheus.Histogram
}

// newMetrics creates the audit metrics and registers them on reg unless it
// is nil. The gauges read w when scraped.
func newMetrics(w *Writer, reg prometheus.Registerer) *metrics {
	m := &metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grokproxy_audit_records_total",
			Help: "Audit records by result: written to the store, spooled to the local file, refused by the store and kept in the rejected file, or dropped.",
		}, []string{"result"}),
		flushDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "grokproxy_audit_flush_duration_seconds",
			Help:    "Time to write one batch of audit records to the store or the spool.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
	}
	for _, r := range []string{resultWritten, resultSpooled, resultDropped, resultRejected} {
		m.records.WithLabelValues(r)
	}
	if reg == nil {
		return m
	}

	reg.MustRegister(m.records, m.flushDuration,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "grokproxy_audit_queue_depth",
			Help: "Audit records in memory, waiting for a write.",
		}, func() float64 { return float64(w.Stats().Queued) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "grokproxy_audit_spool_bytes",
			Help: "Size of the audit spool file in bytes.",
		}, func() float64 { return float64(w.spoolBytes.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "grokproxy_audit_spool_records",
			Help: "Spooled audit records not yet written to the store.",
		}, func() float64 { return float64(w.spoolRecords.Load()) }),
	)
	return m
}
