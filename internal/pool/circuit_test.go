package pool_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/grokproxy/grokproxy/internal/pool"
	"github.com/grokproxy/grokproxy/internal/store"
	"github.com/grokproxy/grokproxy/internal/upstream"
)

func circuitConfig() pool.Config {
	cfg := testConfig()
	cfg.CircuitWindow = 10 // opens after 5 calls when most fail
	cfg.CircuitThreshold = 0.5
	cfg.CircuitCooldown = 30 * time.Second
	return cfg
}

// totalFailures sums the failures charged to every session.
func totalFailures(h *harness) int64 {
	views, _ := h.pool.List(store.SessionFilter{})
	var n int64
	for _, v := range views {
		n += v.FailureCount
	}
	return n
}

func acquireErr(h *harness) error {
	_, err := h.pool.Acquire(context.Background(), pool.AcquireRequest{Provider: store.ProviderGrok})
	return err
}

func TestCircuitOpensAndFailsFast(t *testing.T) {
	h := newHarness(t, circuitConfig())
	for range 3 {
		h.add()
	}
	earlyLease := h.acquire(pool.AcquireRequest{})
	fail := upstreamErr(upstream.OutcomeUnavailable)

	for range 4 {
		h.call(pool.AcquireRequest{}, fail)
	}
	if got := h.pool.CircuitState(store.ProviderGrok); got != pool.CircuitClosed {
		t.Fatalf("state after 4 failures = %q; want closed", got)
	}
	h.call(pool.AcquireRequest{}, &upstream.Error{Outcome: upstream.OutcomeUnavailable, Status: 502})

	if got := h.pool.CircuitState(store.ProviderGrok); got != pool.CircuitOpen {
		t.Fatalf("state after 5 failures = %q; want open", got)
	}
	if err := acquireErr(h); !errors.Is(err, pool.ErrCircuitOpen) {
		t.Errorf("Acquire = %v; want ErrCircuitOpen", err)
	}
	if v := metricValue(t, h, "grokproxy_circuit_state", "provider", store.ProviderGrok); v != 2 {
		t.Errorf("grokproxy_circuit_state = %v; want 2 (open)", v)
	}

	// The 4 unavailable calls before the circuit opened were charged; a
	// failure that ends while it is open is not.
	h.pool.Release(earlyLease, pool.Result{Err: fail})
	if got := totalFailures(h); got != 4 {
		t.Errorf("charged failures = %d; want 4", got)
	}
	views, _ := h.pool.List(store.SessionFilter{})
	for _, v := range views {
		if v.FailureRate != 0 {
			t.Errorf("session %s failure rate = %v after the circuit opened; want 0", v.ID, v.FailureRate)
		}
	}
	if n := h.pool.Usable(store.ProviderGrok); n != 3 {
		t.Errorf("Usable = %d; want 3 because no session is to blame", n)
	}
}

func TestCircuitRecovers(t *testing.T) {
	h := newHarness(t, circuitConfig())
	h.add()
	h.add()
	fail := upstreamErr(upstream.OutcomeUnavailable)
	for range 5 {
		h.call(pool.AcquireRequest{}, fail)
	}
	if got := h.pool.CircuitState(store.ProviderGrok); got != pool.CircuitOpen {
		t.Fatalf("state = %q; want open", got)
	}

	// After the cooldown one trial call goes through; a failed trial
	// opens the circuit again.
	h.clock.Advance(30 * time.Second)
	if got := h.pool.CircuitState(store.ProviderGrok); got != pool.CircuitHalfOpen {
		t.Fatalf("state after cooldown = %q; want half_open", got)
	}
	if v := metricValue(t, h, "grokproxy_circuit_state", "provider", store.ProviderGrok); v != 1 {
		t.Errorf("grokproxy_circuit_state = %v; want 1 (half-open)", v)
	}
	trial := h.acquire(pool.AcquireRequest{})
	if err := acquireErr(h); !errors.Is(err, pool.ErrCircuitOpen) {
		t.Errorf("second Acquire while half-open = %v; want ErrCircuitOpen", err)
	}
	h.pool.Release(trial, pool.Result{Err: fail})
	if got := h.pool.CircuitState(store.ProviderGrok); got != pool.CircuitOpen {
		t.Fatalf("state after a failed trial = %q; want open", got)
	}

	// A passing trial closes it.
	h.clock.Advance(30 * time.Second)
	h.call(pool.AcquireRequest{}, nil)
	if got := h.pool.CircuitState(store.ProviderGrok); got != pool.CircuitClosed {
		t.Fatalf("state after a passing trial = %q; want closed", got)
	}
	for range 10 {
		h.call(pool.AcquireRequest{}, nil)
	}
	if v := metricValue(t, h, "grokproxy_circuit_state", "provider", store.ProviderGrok); v != 0 {
		t.Errorf("grokproxy_circuit_state = %v; want 0 (closed)", v)
	}
}

func TestCircuitCanceledTrialFreesSlot(t *testing.T) {
	h := newHarness(t, circuitConfig())
	h.add()
	for range 5 {
		h.call(pool.AcquireRequest{}, upstreamErr(upstream.OutcomeUnavailable))
	}
	h.clock.Advance(30 * time.Second)

	h.call(pool.AcquireRequest{}, upstreamErr(upstream.OutcomeCanceled))
	if got := h.pool.CircuitState(store.ProviderGrok); got != pool.CircuitHalfOpen {
		t.Fatalf("state after a canceled trial = %q; want half_open", got)
	}
	h.call(pool.AcquireRequest{}, nil)
	if got := h.pool.CircuitState(store.ProviderGrok); got != pool.CircuitClosed {
		t.Errorf("state = %q; want closed", got)
	}
}

func TestCircuitStaysClosedOnMixedResults(t *testing.T) {
	cfg := circuitConfig()
	cfg.FailureThreshold = 1 // keep session quarantine out of this test
	h := newHarness(t, cfg)
	h.add()
	h.add()
	for range 20 {
		h.call(pool.AcquireRequest{}, nil)
		h.call(pool.AcquireRequest{}, upstreamErr(upstream.OutcomeUnavailable))
	}
	if got := h.pool.CircuitState(store.ProviderGrok); got != pool.CircuitClosed {
		t.Errorf("state at half the calls failing = %q; want closed", got)
	}
}

func TestResetCircuit(t *testing.T) {
	h := newHarness(t, circuitConfig())
	h.add()
	for range 5 {
		h.call(pool.AcquireRequest{}, upstreamErr(upstream.OutcomeUnavailable))
	}
	h.pool.ResetCircuit(store.ProviderGrok)
	if got := h.pool.CircuitState(store.ProviderGrok); got != pool.CircuitClosed {
		t.Fatalf("state after reset = %q; want closed", got)
	}
	if err := acquireErr(h); err != nil {
		t.Errorf("Acquire after reset: %v", err)
	}
	if got := h.pool.CircuitState("nonexistent"); got != pool.CircuitClosed {
		t.Errorf("state of an unknown provider = %q; want closed", got)
	}
}
