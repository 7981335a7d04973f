package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/grokproxy/grokproxy/internal/auth"
	"github.com/grokproxy/grokproxy/internal/observe"
	"github.com/grokproxy/grokproxy/internal/ratelimit"
)

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// limitedServer serves a streaming handler behind rateLimit for a
// principal with the given limits.
func limitedServer(t *testing.T, limits ratelimit.Limiter, p auth.Principal, handler http.HandlerFunc) *httptest.Server {
	t.Helper()
	s := &Server{
		limits:  limits,
		metrics: observe.NewMetrics(prometheus.NewRegistry(), nil),
		log:     observe.NewLogger(io.Discard, "error", "json"),
	}
	h := s.rateLimit(handler)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(auth.NewContext(r.Context(), p)))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// streamTwoEvents writes an SSE event, flushes, then writes another.
func streamTwoEvents(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	io.WriteString(w, "data: one\n\n")
	w.(http.Flusher).Flush()
	io.WriteString(w, "data: [DONE]\n\n")
}

func TestRateLimitThenRetryAfterSucceeds(t *testing.T) {
	clk := &testClock{t: time.Date(2025, 5, 1, 9, 0, 0, 0, time.UTC)}
	srv := limitedServer(t, ratelimit.NewMemory(clk.now, 0),
		auth.Principal{UserID: "u1", RateLimitPerMinute: 3}, streamTwoEvents)

	for i := range 3 {
		res := get(t, srv.URL)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("request %d: status %d; want 200", i+1, res.StatusCode)
		}
		if got := res.Header.Get("x-ratelimit-remaining-requests"); got != strconv.Itoa(2-i) {
			t.Errorf("request %d: remaining %q; want %d", i+1, got, 2-i)
		}
		if got := res.Header.Get("x-ratelimit-limit-requests"); got != "3" {
			t.Errorf("request %d: limit header %q; want 3", i+1, got)
		}
	}

	res := get(t, srv.URL)
	if res.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("fourth request: status %d; want 429", res.StatusCode)
	}
	retry, err := strconv.Atoi(res.Header.Get("Retry-After"))
	if err != nil || retry < 1 || retry > 60 {
		t.Fatalf("Retry-After %q; want an integer from 1 to 60", res.Header.Get("Retry-After"))
	}
	var body struct {
		Error struct{ Type, Code, Message string }
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if body.Error.Type != "rate_limit_error" || !strings.Contains(body.Error.Message, "requests per minute") {
		t.Errorf("error = %+v; want a rate_limit_error naming the per-minute limit", body.Error)
	}
	if res.Header.Get("x-ratelimit-remaining-requests") != "0" {
		t.Errorf("remaining on 429 = %q; want 0", res.Header.Get("x-ratelimit-remaining-requests"))
	}

	clk.advance(time.Duration(retry-1) * time.Second)
	if res := get(t, srv.URL); res.StatusCode != http.StatusTooManyRequests {
		t.Errorf("a second before Retry-After: status %d; want 429", res.StatusCode)
	}
	clk.advance(time.Second)
	if res := get(t, srv.URL); res.StatusCode != http.StatusOK {
		t.Errorf("after Retry-After: status %d; want 200", res.StatusCode)
	}
}

func TestRateLimitHeadersOnStream(t *testing.T) {
	clk := &testClock{t: time.Now()}
	srv := limitedServer(t, ratelimit.NewMemory(clk.now, 0),
		auth.Principal{UserID: "u1", RateLimitPerMinute: 10}, streamTwoEvents)
	res := get(t, srv.URL)
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q; want a stream", ct)
	}
	for h, want := range map[string]string{
		"x-ratelimit-limit-requests":     "10",
		"x-ratelimit-remaining-requests": "9",
		"x-ratelimit-reset-requests":     "1m0s",
	} {
		if got := res.Header.Get(h); got != want {
			t.Errorf("%s = %q; want %q", h, got, want)
		}
	}
}

func TestConcurrencyCapPerKey(t *testing.T) {
	clk := &testClock{t: time.Now()}
	entered := make(chan struct{})
	unblock := make(chan struct{})
	srv := limitedServer(t, ratelimit.NewMemory(clk.now, 0),
		auth.Principal{UserID: "u1", KeyID: "k1", RateLimitPerMinute: 100, MaxConcurrent: 1},
		func(w http.ResponseWriter, r *http.Request) {
			entered <- struct{}{}
			<-unblock
		})

	first := make(chan int)
	go func() {
		res, err := http.Get(srv.URL)
		if err != nil {
			first <- 0
			return
		}
		res.Body.Close()
		first <- res.StatusCode
	}()
	<-entered
	res := get(t, srv.URL)
	if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") == "" {
		t.Errorf("second concurrent request: status %d, Retry-After %q; want 429 with Retry-After",
			res.StatusCode, res.Header.Get("Retry-After"))
	}
	close(unblock)
	if code := <-first; code != http.StatusOK {
		t.Errorf("first request: status %d; want 200", code)
	}
	go func() { <-entered }()
	if res := get(t, srv.URL); res.StatusCode != http.StatusOK {
		t.Errorf("request after the first ended: status %d; want 200", res.StatusCode)
	}
}

// failingLimiter fails every call, as a fail-closed limiter does while
// Redis is down.
type failingLimiter struct{ ratelimit.Limiter }

func (failingLimiter) AllowUser(context.Context, string, int) (ratelimit.Decision, error) {
	return ratelimit.Decision{}, io.ErrUnexpectedEOF
}

func TestRateLimiterUnavailable(t *testing.T) {
	srv := limitedServer(t, failingLimiter{}, auth.Principal{UserID: "u1", RateLimitPerMinute: 5}, streamTwoEvents)
	res := get(t, srv.URL)
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
		t.Errorf("status %d, Retry-After %q; want 503 with Retry-After", res.StatusCode, res.Header.Get("Retry-After"))
	}
}

// get fetches url and keeps the body for reading; the body is closed at
// the end of the test.
func get(t *testing.T, url string) *http.Response {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	return res
}
