package admin_test

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/grokproxy/grokproxy/internal/admin"
	"github.com/grokproxy/grokproxy/internal/store"
	"github.com/grokproxy/grokproxy/internal/store/sqlite"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// summaryBody is the response body of GET /admin/metrics/summary.
type summaryBody struct {
	Object       string         `json:"object"`
	Since        time.Time      `json:"since"`
	Requests     int            `json:"requests"`
	Errors       int            `json:"errors"`
	ErrorRate    float64        `json:"error_rate"`
	ErrorTypes   map[string]int `json:"error_types"`
	FirstTokenMS struct {
		Count int    `json:"count"`
		P50   *int64 `json:"p50"`
		P90   *int64 `json:"p90"`
		P99   *int64 `json:"p99"`
	} `json:"first_token_ms"`
	Minutes []struct {
		Start           time.Time `json:"start"`
		Requests        int       `json:"requests"`
		Errors          int       `json:"errors"`
		FirstTokenP50MS *int64    `json:"first_token_p50_ms"`
	} `json:"minutes"`
}

// recorderStub counts what reaches the next recorder.
type recorderStub struct{ got []store.Generation }

func (r *recorderStub) Admit() error              { return nil }
func (r *recorderStub) Record(g store.Generation) { r.got = append(r.got, g) }

func TestSummaryCountsPerMinute(t *testing.T) {
	start := time.Date(2025, 3, 1, 12, 0, 30, 0, time.UTC)
	clk := &clock{t: start}
	sum := admin.NewSummary(clk.Now)
	next := &recorderStub{}
	rec := sum.Tap(next)

	// Minute 12:00: 8 successes with first tokens of 100 to 800 ms.
	for i := 1; i <= 8; i++ {
		rec.Record(store.Generation{Status: 200, LatencyMS: int64(i * 200), FirstTokenMS: int64(i * 100), CreatedAt: start})
	}
	// Minute 12:05: two errors of two types.
	clk.Set(start.Add(5 * time.Minute))
	rec.Record(store.Generation{Status: 429, ErrorType: "rate_limit_error", LatencyMS: 5})
	rec.Record(store.Generation{Status: 502, ErrorType: "unavailable", LatencyMS: 30})

	if len(next.got) != 10 {
		t.Fatalf("next recorder got %d records; want 10", len(next.got))
	}
	srv := newAdminServer(t, &admin.Handler{Summary: sum, Now: clk.Now})
	var body summaryBody
	if code := getJSON(t, srv, "/admin/metrics/summary", &body); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	if body.Requests != 10 || body.Errors != 2 {
		t.Errorf("requests, errors = %d, %d; want 10, 2", body.Requests, body.Errors)
	}
	if body.ErrorRate != 0.2 {
		t.Errorf("error_rate = %v; want 0.2", body.ErrorRate)
	}
	if body.ErrorTypes["rate_limit_error"] != 1 || body.ErrorTypes["unavailable"] != 1 {
		t.Errorf("error_types = %v; want one of each", body.ErrorTypes)
	}
	if len(body.Minutes) != 60 {
		t.Fatalf("%d minutes; want 60", len(body.Minutes))
	}
	last := body.Minutes[59]
	if !last.Start.Equal(time.Date(2025, 3, 1, 12, 5, 0, 0, time.UTC)) || last.Requests != 2 || last.Errors != 2 {
		t.Errorf("last minute = %+v; want 12:05 with 2 requests, 2 errors", last)
	}
	first := body.Minutes[54]
	if first.Requests != 8 || first.FirstTokenP50MS == nil {
		t.Fatalf("minute 12:00 = %+v; want 8 requests with a first-token median", first)
	}
	// The median of 100..800 ms is 400 ms; bins are 25% wide.
	if p := *first.FirstTokenP50MS; p < 400 || p > 500 {
		t.Errorf("first-token median of 12:00 = %d ms; want 400-500", p)
	}
	if body.FirstTokenMS.Count != 8 {
		t.Errorf("first_token_ms.count = %d; want 8", body.FirstTokenMS.Count)
	}
	if p := body.FirstTokenMS.P99; p == nil || *p != 800 {
		t.Errorf("first_token_ms.p99 = %v; want 800 (the largest value)", p)
	}
}

func TestSummaryForgetsAfterAnHour(t *testing.T) {
	start := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	clk := &clock{t: start}
	sum := admin.NewSummary(clk.Now)
	sum.Record(store.Generation{Status: 200, CreatedAt: start})
	clk.Set(start.Add(61 * time.Minute))
	sum.Record(store.Generation{Status: 500, ErrorType: "server_error"})
	// A record from the future or from before the window is dropped.
	sum.Record(store.Generation{Status: 200, CreatedAt: start.Add(2 * time.Hour)})
	sum.Record(store.Generation{Status: 200, CreatedAt: start.Add(-time.Hour)})

	srv := newAdminServer(t, &admin.Handler{Summary: sum})
	var body summaryBody
	getJSON(t, srv, "/admin/metrics/summary", &body)
	if body.Requests != 1 || body.Errors != 1 {
		t.Errorf("requests, errors = %d, %d; want 1, 1", body.Requests, body.Errors)
	}
	if want := clk.Now().Add(-time.Hour); !body.Since.Equal(want) {
		t.Errorf("since = %v; want %v", body.Since, want)
	}
	if body.FirstTokenMS.P50 != nil {
		t.Errorf("first_token_ms.p50 = %d; want null with no first token", *body.FirstTokenMS.P50)
	}
}

func TestSummaryFillsFromStore(t *testing.T) {
	st := sqlite.OpenTest(t)
	start := time.Now().UTC().Truncate(time.Minute).Add(30 * time.Second)
	insertGenerations(t, st, []store.Generation{
		{ID: "gen_old", Status: 200, CreatedAt: start.Add(-2 * time.Hour)},
		{ID: "gen_a", Status: 200, FirstTokenMS: 50, CreatedAt: start.Add(-30 * time.Minute)},
		{ID: "gen_b", Status: 503, ErrorType: "unavailable", CreatedAt: start.Add(-10 * time.Minute)},
		// Written after the start by this replica: it reached Record too
		// and must not count twice.
		{ID: "gen_live", Status: 200, CreatedAt: start.Add(time.Second)},
	})
	clk := &clock{t: start}
	sum := admin.NewSummary(clk.Now)
	clk.Set(start.Add(2 * time.Second))
	sum.Record(store.Generation{ID: "gen_live", Status: 200, CreatedAt: start.Add(time.Second)})

	srv := newAdminServer(t, &admin.Handler{Summary: sum, Generations: st})
	for round := 0; round < 2; round++ {
		var body summaryBody
		getJSON(t, srv, "/admin/metrics/summary", &body)
		if body.Requests != 3 || body.Errors != 1 {
			t.Errorf("round %d: requests, errors = %d, %d; want 3, 1", round, body.Requests, body.Errors)
		}
		if body.FirstTokenMS.Count != 1 {
			t.Errorf("round %d: first_token_ms.count = %d; want 1", round, body.FirstTokenMS.Count)
		}
		if want := clk.Now().Add(-time.Hour); !body.Since.Equal(want) {
			t.Errorf("round %d: since = %v; want %v", round, body.Since, want)
		}
	}
}
