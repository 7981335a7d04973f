package ratelimit

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// brokenLimiter fails every call, as Redis does while it is down.
type brokenLimiter struct{}

var errDown = errors.New("connection refused")

func (brokenLimiter) AllowUser(context.Context, string, int) (Decision, error) {
	return Decision{}, errDown
}

func (brokenLimiter) AllowSession(context.Context, string, float64) (bool, error) {
	return false, errDown
}

func (brokenLimiter) Acquire(context.Context, string, string, int) (func(), bool, error) {
	return nil, false, errDown
}

func (brokenLimiter) AuthFailure(context.Context, string) (bool, time.Duration, error) {
	return false, 0, errDown
}

func (brokenLimiter) AuthBlocked(context.Context, string) (bool, time.Duration, error) {
	return false, 0, errDown
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestFallbackUsesMemoryWhenPrimaryFails(t *testing.T) {
	ctx := context.Background()
	var logs syncBuffer
	l := NewFallback(brokenLimiter{}, NewMemory(newClock().now, 1), false, slog.New(slog.NewTextHandler(&logs, nil)))

	for i := range 2 {
		d, err := l.AllowUser(ctx, "u", 2)
		if err != nil {
			t.Fatalf("AllowUser: %v; want the fallback's answer", err)
		}
		if !d.Allowed {
			t.Fatalf("request %d refused under a limit of 2", i+1)
		}
	}
	if d, _ := l.AllowUser(ctx, "u", 2); d.Allowed {
		t.Fatal("fallback did not enforce the limit")
	}
	if _, ok, err := l.Acquire(ctx, "key", "k", 1); err != nil || !ok {
		t.Fatalf("Acquire = %v, %v; want ok from the fallback", ok, err)
	}
	if _, ok, _ := l.Acquire(ctx, "key", "k", 1); ok {
		t.Fatal("fallback did not enforce the concurrency cap")
	}
	l.AuthFailure(ctx, "192.0.2.1")
	if blocked, _, _ := l.AuthFailure(ctx, "192.0.2.1"); !blocked {
		t.Fatal("fallback did not block the address")
	}

	if n := strings.Count(logs.String(), "rate limiter unavailable"); n != 1 {
		t.Errorf("logged the outage %d times; want once per minute", n)
	}
}

func TestFallbackFailClosed(t *testing.T) {
	l := NewFallback(brokenLimiter{}, nil, false, discardLog())
	if _, err := l.AllowUser(context.Background(), "u", 5); !errors.Is(err, errDown) {
		t.Errorf("AllowUser error = %v; want the primary's error", err)
	}
	if _, ok, err := l.Acquire(context.Background(), "key", "k", 1); ok || err == nil {
		t.Errorf("Acquire = %v, %v; want refused with an error", ok, err)
	}
}

func TestFallbackFailOpen(t *testing.T) {
	l := NewFallback(brokenLimiter{}, nil, true, discardLog())
	d, err := l.AllowUser(context.Background(), "u", 5)
	if err != nil || !d.Allowed {
		t.Errorf("AllowUser = %+v, %v; want allowed", d, err)
	}
	release, ok, err := l.Acquire(context.Background(), "key", "k", 1)
	if err != nil || !ok || release == nil {
		t.Errorf("Acquire = %v, %v; want allowed with a release func", ok, err)
	}
}

func TestFallbackPrefersPrimary(t *testing.T) {
	ctx := context.Background()
	primary := NewMemory(newClock().now, 10)
	secondary := NewMemory(newClock().now, 10)
	l := NewFallback(primary, secondary, false, discardLog())
	l.AllowUser(ctx, "u", 1)
	if d, _ := primary.AllowUser(ctx, "u", 1); d.Allowed {
		t.Error("request was not recorded by the primary")
	}
	if d, _ := secondary.AllowUser(ctx, "u", 1); !d.Allowed {
		t.Error("request was recorded by the fallback while the primary worked")
	}
}

// flakyLimiter fails while down is set and counts the calls it receives.
type flakyLimiter struct {
	*Memory
	mu    sync.Mutex
	down  bool
	calls int
}

func (l *flakyLimiter) setDown(down bool) {
	l.mu.Lock()
	l.down = down
	l.mu.Unlock()
}

func (l *flakyLimiter) callCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls
}

func (l *flakyLimiter) AllowUser(ctx context.Context, userID string, perMinute int) (Decision, error) {
	l.mu.Lock()
	l.calls++
	down := l.down
	l.mu.Unlock()
	if down {
		return Decision{}, errDown
	}
	return l.Memory.AllowUser(ctx, userID, perMinute)
}

func TestFallbackRestsFailedPrimary(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	primary := &flakyLimiter{Memory: NewMemory(clk.now, 10), down: true}
	reg := prometheus.NewRegistry()
	l := NewFallback(primary, NewMemory(clk.now, 10), false, discardLog(),
		WithClock(clk.now), WithProbeInterval(time.Second), WithMetrics(reg))

	for range 5 {
		if d, err := l.AllowUser(ctx, "u", 100); err != nil || !d.Allowed {
			t.Fatalf("AllowUser = %+v, %v; want allowed by the fallback", d, err)
		}
	}
	if n := primary.callCount(); n != 1 {
		t.Errorf("primary called %d times within the probe interval; want 1", n)
	}
	if !l.Degraded() || gaugeValue(t, reg, "grokproxy_ratelimit_fallback_active") != 1 {
		t.Error("fallback not reported active while the primary is down")
	}

	primary.setDown(false)
	clk.advance(time.Second)
	if _, err := l.AllowUser(ctx, "u", 100); err != nil {
		t.Fatal(err)
	}
	if n := primary.callCount(); n != 2 {
		t.Errorf("primary called %d times after the probe interval; want 2", n)
	}
	if l.Degraded() || gaugeValue(t, reg, "grokproxy_ratelimit_fallback_active") != 0 {
		t.Error("fallback still reported active after the primary answered")
	}
	if got := gaugeValue(t, reg, "grokproxy_ratelimit_backend_errors_total"); got != 1 {
		t.Errorf("backend errors = %v; want 1", got)
	}
}

func TestFallbackFailClosedWhileResting(t *testing.T) {
	clk := newClock()
	primary := &flakyLimiter{Memory: NewMemory(clk.now, 10), down: true}
	l := NewFallback(primary, nil, false, discardLog(), WithClock(clk.now))
	for i := range 3 {
		if _, err := l.AllowUser(context.Background(), "u", 5); !errors.Is(err, errDown) {
			t.Fatalf("call %d: error = %v; want one that wraps the primary's", i+1, err)
		}
	}
	if n := primary.callCount(); n != 1 {
		t.Errorf("primary called %d times; want 1 within the probe interval", n)
	}
}

func TestFallbackIgnoresCanceledCaller(t *testing.T) {
	clk := newClock()
	primary := &flakyLimiter{Memory: NewMemory(clk.now, 10), down: true}
	l := NewFallback(primary, NewMemory(clk.now, 10), false, discardLog(), WithClock(clk.now))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	l.AllowUser(ctx, "u", 5)
	if l.Degraded() {
		t.Error("a canceled caller marked the primary down")
	}
}

// gaugeValue returns the value of the single-sample metric name in reg.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		m := f.GetMetric()[0]
		if m.GetGauge() != nil {
			return m.GetGauge().GetValue()
		}
		return m.GetCounter().GetValue()
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}
