package pool_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/grokproxy/grokproxy/internal/pool"
	"github.com/grokproxy/grokproxy/internal/ratelimit"
	"github.com/grokproxy/grokproxy/internal/store"
)

// The ratelimit limiters fit the pool's interface.
var _ pool.SessionLimiter = ratelimit.Limiter(nil)

// scriptedLimiter refuses the sessions in refuse and records every call.
type scriptedLimiter struct {
	mu     sync.Mutex
	refuse map[string]bool
	err    error
	calls  []string
	rate   float64
}

func (l *scriptedLimiter) AllowSession(_ context.Context, id string, perSecond float64) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, id)
	l.rate = perSecond
	if l.err != nil {
		return false, l.err
	}
	return !l.refuse[id], nil
}

func limiterHarness(t *testing.T, lim pool.SessionLimiter) *harness {
	cfg := testConfig()
	cfg.RatePerSecond = 2
	cfg.Limiter = lim
	return newHarness(t, cfg)
}

func TestLimiterRefusalFallsBackToOtherSession(t *testing.T) {
	lim := &scriptedLimiter{refuse: map[string]bool{}}
	h := limiterHarness(t, lim)
	a := h.add()
	b := h.add()
	lim.refuse[a.ID] = true

	// The in-process bucket (2 tokens) is not used: many calls at one
	// instant pass as long as the shared limiter allows them.
	for i := range 10 {
		if id := h.call(pool.AcquireRequest{}, nil); id != b.ID {
			t.Fatalf("call %d went to %s; want %s, the only session the limiter allows", i, id, b.ID)
		}
	}
	if lim.rate != 2 {
		t.Errorf("limiter asked at %v per second; want 2", lim.rate)
	}
}

func TestLimiterRefusingAllRests(t *testing.T) {
	lim := &scriptedLimiter{refuse: map[string]bool{}}
	h := limiterHarness(t, lim)
	a := h.add()
	b := h.add()
	lim.refuse[a.ID], lim.refuse[b.ID] = true, true

	ns := h.noSession(pool.AcquireRequest{})
	if !ns.Resting || ns.RetryAfter <= 0 {
		t.Errorf("NoSessionError = %+v; want resting with a retry time", ns)
	}
	if len(lim.calls) != 2 || lim.calls[0] == lim.calls[1] {
		t.Errorf("limiter calls = %v; want each session asked once", lim.calls)
	}
	if v := h.get(a.ID); v.Status != store.StatusHealthy || v.InFlight != 0 || v.UsageCount != 0 {
		t.Errorf("refused session: %+v; want healthy, unused", v)
	}
}

func TestLimiterErrorAllowsCall(t *testing.T) {
	lim := &scriptedLimiter{err: errors.New("redis down")}
	h := limiterHarness(t, lim)
	v := h.add()
	if id := h.call(pool.AcquireRequest{}, nil); id != v.ID {
		t.Errorf("lease went to %s; want %s", id, v.ID)
	}
}

func TestLimiterKeepsCircuitTrial(t *testing.T) {
	lim := &scriptedLimiter{refuse: map[string]bool{}}
	cfg := circuitConfig()
	cfg.RatePerSecond = 2
	cfg.Limiter = lim
	h := newHarness(t, cfg)
	a := h.add()
	for range 5 {
		h.call(pool.AcquireRequest{}, upstreamErr("unavailable"))
	}
	h.clock.Advance(cfg.CircuitCooldown)
	lim.refuse[a.ID] = true
	h.noSession(pool.AcquireRequest{})
	// The refused trial freed its slot, so the next call may be the trial.
	lim.refuse[a.ID] = false
	h.call(pool.AcquireRequest{}, nil)
	if got := h.pool.CircuitState(store.ProviderGrok); got != pool.CircuitClosed {
		t.Errorf("circuit = %q; want closed after the trial passed", got)
	}
}
