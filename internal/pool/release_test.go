package pool_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/grokproxy/grokproxy/internal/pool"
	"github.com/grokproxy/grokproxy/internal/store"
	"github.com/grokproxy/grokproxy/internal/upstream"
)

func TestRateLimitRestsWithRetryAfter(t *testing.T) {
	h := newHarness(t, testConfig())
	v := h.add()
	start := h.clock.Now()

	h.call(pool.AcquireRequest{}, &upstream.Error{Outcome: upstream.OutcomeRateLimited, Status: 429, RetryAfter: 30 * time.Second})

	got := h.get(v.ID)
	if got.Status != store.StatusHealthy || !got.Resting {
		t.Fatalf("status %q resting %v; want healthy and resting", got.Status, got.Resting)
	}
	if got.CooldownUntil == nil || !got.CooldownUntil.Equal(start.Add(30*time.Second)) {
		t.Errorf("CooldownUntil = %v; want %v", got.CooldownUntil, start.Add(30*time.Second))
	}
	if got.LastReason != pool.ReasonRateLimited {
		t.Errorf("LastReason = %q; want %q", got.LastReason, pool.ReasonRateLimited)
	}
	if n := metricValue(t, h, "grokproxy_session_rotations_total", "reason", pool.ReasonRateLimited); n != 1 {
		t.Errorf("rotations{reason=rate_limited} = %v; want 1", n)
	}

	h.clock.Advance(10 * time.Second)
	ns := h.noSession(pool.AcquireRequest{})
	if !ns.Resting {
		t.Errorf("Resting = false; want true while the only session rests")
	}
	if ns.RetryAfter != 20*time.Second {
		t.Errorf("RetryAfter = %v; want 20s", ns.RetryAfter)
	}

	h.clock.Advance(20 * time.Second)
	if id := h.call(pool.AcquireRequest{}, nil); id != v.ID {
		t.Errorf("lease went to %s; want %s after its rest", id, v.ID)
	}
}

func TestRateLimitNeverRetires(t *testing.T) {
	h := newHarness(t, testConfig())
	v := h.add()
	start := h.clock.Now()

	h.call(pool.AcquireRequest{}, upstreamErr(upstream.OutcomeRateLimited))
	if got := h.get(v.ID).CooldownUntil; got == nil || !got.Equal(start.Add(time.Minute)) {
		t.Errorf("CooldownUntil = %v; want the default 60s rest", got)
	}

	for range 30 {
		h.clock.Advance(time.Minute)
		h.call(pool.AcquireRequest{}, upstreamErr(upstream.OutcomeRateLimited))
	}
	got := h.get(v.ID)
	if got.Status != store.StatusHealthy {
		t.Errorf("status after 31 rate limits = %q; want healthy", got.Status)
	}
	if got.FailureCount != 0 {
		t.Errorf("FailureCount = %d; want 0 because rate limits are not failures", got.FailureCount)
	}
}

func TestUnauthorizedExpiresAfterLoginCheck(t *testing.T) {
	h := newHarness(t, testConfig())
	v := h.add()
	h.client.setProbe(upstream.Probe{}, upstreamErr(upstream.OutcomeUnauthorized))

	h.call(pool.AcquireRequest{}, &upstream.Error{Outcome: upstream.OutcomeUnauthorized, Status: 401})

	waitFor(t, "session to expire", func() bool { return h.get(v.ID).Status == store.StatusExpired })
	if n := h.client.probeCount(); n != 1 {
		t.Errorf("login checks = %d; want 1", n)
	}
	if h.pool.Usable(store.ProviderGrok) != 0 {
		t.Errorf("Usable = %d; want 0 after expiry", h.pool.Usable(store.ProviderGrok))
	}
	h.flush()
	row, err := h.st.Session(context.Background(), v.ID)
	if err != nil {
		t.Fatalf("read session: %v", err)
	}
	if row.Status != store.StatusExpired {
		t.Errorf("stored status = %q; want expired", row.Status)
	}
}

func TestUnauthorizedKeptWhenLoginCheckPasses(t *testing.T) {
	h := newHarness(t, testConfig())
	v := h.add()
	h.client.setProbe(upstream.Probe{Tier: "super"}, nil)

	h.call(pool.AcquireRequest{}, upstreamErr(upstream.OutcomeUnauthorized))

	waitFor(t, "login check", func() bool { return h.get(v.ID).Tier == "super" })
	got := h.get(v.ID)
	if got.Status != store.StatusHealthy {
		t.Errorf("status = %q; want healthy after a passing login check", got.Status)
	}
	if n := h.pool.Usable(store.ProviderGrok); n != 1 {
		t.Errorf("Usable = %d; want 1", n)
	}
}

func TestUnauthorizedInconclusiveCheckQuarantines(t *testing.T) {
	h := newHarness(t, testConfig())
	v := h.add()
	h.client.setProbe(upstream.Probe{}, upstreamErr(upstream.OutcomeUnavailable))

	h.call(pool.AcquireRequest{}, upstreamErr(upstream.OutcomeUnauthorized))

	waitFor(t, "quarantine", func() bool { return h.get(v.ID).Status == store.StatusQuarantined })
	if got := h.get(v.ID).LastReason; got == "" {
		t.Errorf("LastReason is empty; want the login check result")
	}
	if n := metricValue(t, h, "grokproxy_session_rotations_total", "reason", pool.ReasonLoginCheckFailed); n != 1 {
		t.Errorf("rotations{reason=login_check_failed} = %v; want 1", n)
	}
}

func TestBlockedQuarantines(t *testing.T) {
	h := newHarness(t, testConfig())
	v := h.add()

	h.call(pool.AcquireRequest{}, upstreamErr(upstream.OutcomeBlocked))

	got := h.get(v.ID)
	if got.Status != store.StatusQuarantined || got.StatusReason != pool.ReasonBlocked {
		t.Errorf("status %q (%q); want quarantined (blocked)", got.Status, got.StatusReason)
	}
	if ns := h.noSession(pool.AcquireRequest{}); ns.Resting {
		t.Errorf("Resting = true with the only session quarantined; want false")
	}
}

func TestFailureRateNeedsMinRequests(t *testing.T) {
	cfg := testConfig()
	cfg.CircuitWindow = 100 // keep the circuit out of this test
	h := newHarness(t, cfg)
	v := h.add()
	fail := upstreamErr(upstream.OutcomeUnavailable)

	for i := range 9 {
		h.call(pool.AcquireRequest{}, fail)
		if got := h.get(v.ID).Status; got != store.StatusHealthy {
			t.Fatalf("status after %d failures = %q; want healthy before 10 requests", i+1, got)
		}
	}
	h.call(pool.AcquireRequest{}, fail)
	got := h.get(v.ID)
	if got.Status != store.StatusQuarantined || got.StatusReason == "" {
		t.Errorf("status after 10 failures = %q (%q); want quarantined with a reason", got.Status, got.StatusReason)
	}
	if got.FailureCount != 10 {
		t.Errorf("FailureCount = %d; want 10", got.FailureCount)
	}
}

func TestFailureRateOneBlip(t *testing.T) {
	h := newHarness(t, testConfig())
	v := h.add()
	fail := upstreamErr(upstream.OutcomeBrokenStream)

	h.call(pool.AcquireRequest{}, fail)
	for range 9 {
		h.call(pool.AcquireRequest{}, nil)
	}
	h.call(pool.AcquireRequest{}, fail) // 2 of 11
	got := h.get(v.ID)
	if got.Status != store.StatusHealthy {
		t.Fatalf("status at 2 failures in 11 = %q; want healthy", got.Status)
	}
	if want := 2.0 / 11; got.FailureRate < want-1e-9 || got.FailureRate > want+1e-9 {
		t.Errorf("FailureRate = %v; want %v", got.FailureRate, want)
	}

	h.call(pool.AcquireRequest{}, fail) // 3 of 12 is over 0.2
	got = h.get(v.ID)
	if got.Status != store.StatusQuarantined || got.LastReason == "" {
		t.Errorf("status at 3 failures in 12 = %q; want quarantined", got.Status)
	}
	if n := metricValue(t, h, "grokproxy_session_rotations_total", "reason", pool.ReasonFailureRate); n != 1 {
		t.Errorf("rotations{reason=failure_rate} = %v; want 1", n)
	}
}

func TestNotChargedOutcomes(t *testing.T) {
	cfg := testConfig()
	cfg.CircuitWindow = 100
	h := newHarness(t, cfg)
	v := h.add()

	errs := map[string]error{
		"rejected_request": upstreamErr(upstream.OutcomeRejectedRequest),
		"canceled":         upstreamErr(upstream.OutcomeCanceled),
		"bare_cancel":      fmt.Errorf("read answer: %w", context.Canceled),
		"egress_rejected":  &upstream.Error{Outcome: upstream.OutcomeEgressRejected, Status: 403, Code: 7},
	}
	for name, err := range errs {
		for range 12 {
			h.call(pool.AcquireRequest{}, err)
		}
		got := h.get(v.ID)
		if got.Status != store.StatusHealthy {
			t.Errorf("%s: status = %q; want healthy", name, got.Status)
		}
		if got.FailureCount != 0 || got.FailureRate != 0 {
			t.Errorf("%s: failures = %d, rate %v; want none charged", name, got.FailureCount, got.FailureRate)
		}
	}
	if got := h.get(v.ID).UsageCount; got != 48 {
		t.Errorf("UsageCount = %d; want 48", got)
	}
}

func TestReleaseTwice(t *testing.T) {
	h := newHarness(t, testConfig())
	v := h.add()
	l := h.acquire(pool.AcquireRequest{})
	h.pool.Release(l, pool.Result{})
	h.pool.Release(l, pool.Result{Err: upstreamErr(upstream.OutcomeBlocked)})

	got := h.get(v.ID)
	if got.SuccessCount != 1 || got.InFlight != 0 || got.Status != store.StatusHealthy {
		t.Errorf("after a second release: successes %d, in flight %d, status %q; want 1, 0, healthy",
			got.SuccessCount, got.InFlight, got.Status)
	}
}

func TestReleaseAfterRemove(t *testing.T) {
	h := newHarness(t, testConfig())
	v := h.add()
	l := h.acquire(pool.AcquireRequest{})
	if err := h.pool.Remove(context.Background(), v.ID); err != nil {
		t.Fatalf("remove: %v", err)
	}
	h.pool.Release(l, pool.Result{Err: upstreamErr(upstream.OutcomeBlocked)})
	if _, ok := h.pool.Get(v.ID); ok {
		t.Errorf("removed session is back in the pool")
	}
}
