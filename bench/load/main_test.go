package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// sseServer streams two chunks and [DONE], except that every cutEvery-th
// request ends without [DONE].
func sseServer(t *testing.T, cutEvery int64) *httptest.Server {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer k" {
			http.Error(w, "bad key", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n")
		fmt.Fprint(w, "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n")
		if cutEvery > 0 && n.Add(1)%cutEvery == 0 {
			return
		}
		fmt.Fprint(w, "data: [DONE]\n\n")
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestRunCountsRequestsAndCuts(t *testing.T) {
	srv := sseServer(t, 4)
	res, err := run(context.Background(), options{url: srv.URL, key: "k", model: "m", clients: 2, requests: 8,
		stream: true, timeout: 5 * time.Second, duration: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if res.Total != 16 || res.Cut != 4 || res.Errors != 0 || res.Measured != 12 {
		t.Errorf("total %d cut %d errors %d measured %d; want 16, 4, 0, 12", res.Total, res.Cut, res.Errors, res.Measured)
	}
	if res.P50 <= 0 || res.TTFT50 <= 0 || res.TTFT50 > res.Max {
		t.Errorf("p50 %v ttft %v max %v; want positive times with ttft within max", res.P50, res.TTFT50, res.Max)
	}
}

func TestRunReportsErrors(t *testing.T) {
	srv := sseServer(t, 0)
	res, err := run(context.Background(), options{url: srv.URL, key: "wrong", model: "m", clients: 1, requests: 3,
		stream: true, timeout: 5 * time.Second, duration: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 3 || res.Measured != 0 || res.FirstError == "" {
		t.Errorf("errors %d measured %d first %q; want 3, 0 and a message", res.Errors, res.Measured, res.FirstError)
	}
}

func TestMicros(t *testing.T) {
	d := []time.Duration{1 * time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond, 4 * time.Millisecond}
	if got := micros(d, 0.5); got != 2000 {
		t.Errorf("p50 = %v; want 2000", got)
	}
	if got := micros(d, 1); got != 4000 {
		t.Errorf("max = %v; want 4000", got)
	}
	if got := micros(nil, 0.5); got != 0 {
		t.Errorf("empty p50 = %v; want 0", got)
	}
}
