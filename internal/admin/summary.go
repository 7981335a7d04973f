package admin

import (
	"context"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/grokproxy/grokproxy/internal/store"
)

// Window of GET /admin/metrics/summary.
const (
	summaryMinutes = 60
	// histogramBins and histogramGrowth set the latency histogram: bin i
	// holds values up to histogramGrowth^i milliseconds, so a percentile
	// is exact to within 25%, and the last bin ends past an hour.
	histogramBins   = 72
	histogramGrowth = 1.25
	// maxBackfillRows bounds the store rows read to fill the window of a
	// gateway that started less than an hour ago.
	maxBackfillRows = 20_000
	// maxErrorTypes bounds the error types counted per minute; further
	// types are counted as "other".
	maxErrorTypes = 16
)

// Summary keeps per-minute figures of the last hour of admitted requests
// for GET /admin/metrics/summary: counts, errors and latency histograms.
// Record feeds it; the first summary request also reads the store rows of
// the hour before the gateway started. It is safe for concurrent use.
//
// NOTE: requests recorded live are those of this replica only. Behind a
// load balancer each replica shows its own traffic, plus whatever rows
// were in the store when it filled its window.
type Summary struct {
	now     func() time.Time
	started time.Time

	fillMu sync.Mutex // serialises the one-time fill from the store
	filled bool       // guarded by fillMu

	mu      sync.Mutex // guards the fields below
	minutes [summaryMinutes]minuteStats
	since   time.Time // start of the period the figures cover
}

// minuteStats holds the figures of one minute.
type minuteStats struct {
	minute     int64 // Unix time in minutes; a stale value marks an unused slot
	requests   int
	errors     int
	errorTypes map[string]int
	firstToken histogram
	latency    histogram
}

// histogram counts durations in exponentially growing bins.
type histogram struct {
	bins  [histogramBins]uint32
	count int
	maxMS int64
}

func (h *histogram) add(ms int64) {
	ms = max(ms, 0)
	i := 0
	if ms > 1 {
		i = min(histogramBins-1, int(math.Ceil(math.Log(float64(ms))/math.Log(histogramGrowth))))
	}
	h.bins[i]++
	h.count++
	h.maxMS = max(h.maxMS, ms)
}

func (h *histogram) merge(o *histogram) {
	for i, n := range o.bins {
		h.bins[i] += n
	}
	h.count += o.count
	h.maxMS = max(h.maxMS, o.maxMS)
}

// quantile estimates the q-quantile in milliseconds as the upper edge of
// its bin, capped at the largest value seen. It returns nil when empty.
func (h *histogram) quantile(q float64) *int64 {
	if h.count == 0 {
		return nil
	}
	rank := uint32(math.Ceil(q * float64(h.count)))
	var seen uint32
	for i, n := range h.bins {
		seen += n
		if seen >= max(rank, 1) {
			edge := int64(math.Round(math.Pow(histogramGrowth, float64(i))))
			v := min(edge, h.maxMS)
			return &v
		}
	}
	v := h.maxMS
	return &v
}

// NewSummary returns an empty summary whose clock is now.
func NewSummary(now func() time.Time) *Summary {
	t := now()
	return &Summary{now: now, started: t, since: t}
}

// Record adds one request record. Its CreatedAt places it; a zero
// CreatedAt means now.
func (s *Summary) Record(g store.Generation) {
	at := g.CreatedAt
	if at.IsZero() {
		at = s.now()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addLocked(at, g)
}

func (s *Summary) addLocked(at time.Time, g store.Generation) {
	minute := at.Unix() / 60
	nowMinute := s.now().Unix() / 60
	if minute > nowMinute || minute <= nowMinute-summaryMinutes {
		return
	}
	m := &s.minutes[minute%summaryMinutes]
	if m.minute != minute {
		*m = minuteStats{minute: minute}
	}
	m.requests++
	if g.Status >= 400 {
		m.errors++
		kind := g.ErrorType
		if kind == "" {
			kind = "unknown"
		}
		if m.errorTypes == nil {
			m.errorTypes = map[string]int{}
		}
		if _, ok := m.errorTypes[kind]; !ok && len(m.errorTypes) >= maxErrorTypes {
			kind = "other"
		}
		m.errorTypes[kind]++
	}
	m.latency.add(g.LatencyMS)
	if g.FirstTokenMS > 0 {
		m.firstToken.add(g.FirstTokenMS)
	}
}

// Recorder is the sink that the API hands request records to.
type Recorder interface {
	Admit() error
	Record(g store.Generation)
}

// Tap returns a Recorder that adds each record to s, then hands it to
// next.
func (s *Summary) Tap(next Recorder) Recorder { return tap{s: s, next: next} }

type tap struct {
	s    *Summary
	next Recorder
}

func (t tap) Admit() error { return t.next.Admit() }

func (t tap) Record(g store.Generation) {
	t.s.Record(g)
	t.next.Record(g)
}

// fill reads the store rows of the hour before the gateway started, once.
// A failed read is tried again on the next call.
func (s *Summary) fill(ctx context.Context, src GenerationStore) error {
	s.fillMu.Lock()
	defer s.fillMu.Unlock()
	if s.filled || src == nil {
		return nil
	}
	windowStart := s.now().Add(-summaryMinutes * time.Minute)
	var rows []store.Generation
	_, err := scanGenerations(ctx, src, "", generationCursor{}, func(g store.Generation) bool {
		if !g.CreatedAt.Before(windowStart) && g.CreatedAt.Before(s.started) {
			rows = append(rows, g)
		}
		return g.CreatedAt.After(windowStart) && len(rows) < maxBackfillRows
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range rows {
		s.addLocked(g.CreatedAt, g)
	}
	s.since = windowStart
	if len(rows) == maxBackfillRows {
		// The oldest rows were not read, so the figures start later.
		s.since = rows[len(rows)-1].CreatedAt
	}
	s.filled = true
	return nil
}

// minuteView is one minute of the summary.
type minuteView struct {
	Start           time.Time `json:"start"`
	Requests        int       `json:"requests"`
	Errors          int       `json:"errors"`
	FirstTokenP50MS *int64    `json:"first_token_p50_ms"`
	FirstTokenP95MS *int64    `json:"first_token_p95_ms"`
	LatencyP50MS    *int64    `json:"latency_p50_ms"`
	LatencyP95MS    *int64    `json:"latency_p95_ms"`
}

// percentiles are estimates in milliseconds; null when nothing was seen.
type percentiles struct {
	Count int    `json:"count"`
	P50   *int64 `json:"p50"`
	P90   *int64 `json:"p90"`
	P99   *int64 `json:"p99"`
}

func percentilesOf(h *histogram) percentiles {
	return percentiles{Count: h.count, P50: h.quantile(0.50), P90: h.quantile(0.90), P99: h.quantile(0.99)}
}

// summaryView is the response body of GET /admin/metrics/summary.
type summaryView struct {
	Object        string         `json:"object"` // "metrics_summary"
	BucketSeconds int            `json:"bucket_seconds"`
	Since         time.Time      `json:"since"` // start of the period the figures cover
	Requests      int            `json:"requests"`
	Errors        int            `json:"errors"`
	ErrorRate     float64        `json:"error_rate"`
	ErrorTypes    map[string]int `json:"error_types"`
	FirstTokenMS  percentiles    `json:"first_token_ms"`
	LatencyMS     percentiles    `json:"latency_ms"`
	// Minutes lists the last 60 minutes, oldest first; the last one is
	// the current, partial minute.
	Minutes []minuteView `json:"minutes"`
}

// snapshot sums up the last hour at now.
func (s *Summary) snapshot() summaryView {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	nowMinute := now.Unix() / 60
	since := s.since
	if windowStart := now.Add(-summaryMinutes * time.Minute); since.Before(windowStart) {
		since = windowStart
	}
	out := summaryView{Object: "metrics_summary", BucketSeconds: 60, Since: since,
		ErrorTypes: map[string]int{}, Minutes: make([]minuteView, 0, summaryMinutes)}
	var firstToken, latency histogram

	for minute := nowMinute - summaryMinutes + 1; minute <= nowMinute; minute++ {
		v := minuteView{Start: time.Unix(minute*60, 0).UTC()}
		m := &s.minutes[minute%summaryMinutes]
		if m.minute == minute {
			v.Requests, v.Errors = m.requests, m.errors
			v.FirstTokenP50MS, v.FirstTokenP95MS = m.firstToken.quantile(0.5), m.firstToken.quantile(0.95)
			v.LatencyP50MS, v.LatencyP95MS = m.latency.quantile(0.5), m.latency.quantile(0.95)
			out.Requests += m.requests
			out.Errors += m.errors
			for k, n := range m.errorTypes {
				out.ErrorTypes[k] += n
			}
			firstToken.merge(&m.firstToken)
			latency.merge(&m.latency)
		}
		out.Minutes = append(out.Minutes, v)
	}
	if out.Requests > 0 {
		out.ErrorRate = float64(out.Errors) / float64(out.Requests)
	}
	out.FirstTokenMS, out.LatencyMS = percentilesOf(&firstToken), percentilesOf(&latency)
	return out
}

// metricsSummary serves GET /admin/metrics/summary.
func (h *Handler) metricsSummary(w http.ResponseWriter, r *http.Request) error {
	if h.Summary == nil {
		return errNotConfigured("metrics summary")
	}
	if err := h.Summary.fill(r.Context(), h.Generations); err != nil {
		// The live figures still stand; the next call reads the store again.
		h.Log.Warn("metrics summary not filled from the store", "error", err)
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, h.Summary.snapshot())
	return nil
}
