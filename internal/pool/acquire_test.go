package pool_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/grokproxy/grokproxy/internal/pool"
	"github.com/grokproxy/grokproxy/internal/secret"
	"github.com/grokproxy/grokproxy/internal/store"
	"github.com/grokproxy/grokproxy/internal/upstream"
)

func TestAcquireSpreadsLoad(t *testing.T) {
	h := newHarness(t, testConfig())
	ids := make(map[string]int)
	for range 4 {
		ids[h.add().ID] = 0
	}

	const calls = 400
	for range calls {
		ids[h.call(pool.AcquireRequest{}, nil)]++
	}

	// Each of 4 equal sessions expects 100 calls; 40 is far outside chance.
	for id, n := range ids {
		if n < 40 {
			t.Errorf("session %s served %d of %d calls; want at least 40", id, n, calls)
		}
	}
}

func TestAcquirePrefersFewerInFlight(t *testing.T) {
	h := newHarness(t, testConfig())
	a, b := h.add(), h.add()

	// With a holding 5 leases, two choices always pick b whenever b is
	// sampled, so b must get every lease after a's first five.
	var aLeases []*pool.Lease
	for range 5 {
		aLeases = append(aLeases, h.acquire(pool.AcquireRequest{Prefer: a.ID}))
	}
	for range 20 {
		l := h.acquire(pool.AcquireRequest{})
		if l.SessionID != b.ID {
			t.Fatalf("lease went to %s with 5 in flight; want %s with none", l.SessionID, b.ID)
		}
		h.pool.Release(l, pool.Result{})
	}
	if got := h.get(a.ID).InFlight; got != 5 {
		t.Errorf("in flight on %s = %d; want 5", a.ID, got)
	}
	for _, l := range aLeases {
		h.pool.Release(l, pool.Result{})
	}
	if got := h.get(a.ID).InFlight; got != 0 {
		t.Errorf("in flight after release = %d; want 0", got)
	}
}

func TestAcquireHonoursExclude(t *testing.T) {
	h := newHarness(t, testConfig())
	a, b := h.add(), h.add()

	for range 20 {
		if id := h.call(pool.AcquireRequest{Exclude: []string{a.ID}}, nil); id != b.ID {
			t.Fatalf("lease went to %s; want %s because %s is excluded", id, b.ID, a.ID)
		}
	}
	ns := h.noSession(pool.AcquireRequest{Exclude: []string{a.ID, b.ID}})
	if ns.Resting {
		t.Errorf("Resting = true with every session excluded; want false")
	}
	if ns.Provider != store.ProviderGrok {
		t.Errorf("Provider = %q; want %q", ns.Provider, store.ProviderGrok)
	}
}

func TestAcquirePrefer(t *testing.T) {
	h := newHarness(t, testConfig())
	a, b := h.add(), h.add()

	for range 10 {
		if id := h.call(pool.AcquireRequest{Prefer: b.ID}, nil); id != b.ID {
			t.Fatalf("lease went to %s; want preferred %s", id, b.ID)
		}
	}

	// A preferred session that rests is skipped.
	h.call(pool.AcquireRequest{Prefer: b.ID}, upstreamErr(upstream.OutcomeRateLimited))
	if id := h.call(pool.AcquireRequest{Prefer: b.ID}, nil); id != a.ID {
		t.Errorf("lease went to %s; want %s because %s rests", id, a.ID, b.ID)
	}
}

func TestAcquireUnknownProvider(t *testing.T) {
	h := newHarness(t, testConfig())
	h.add()
	ns := h.noSession(pool.AcquireRequest{Provider: store.ProviderXAI})
	if ns.Resting || ns.Provider != store.ProviderXAI {
		t.Errorf("error = %+v; want not resting for provider xai", ns)
	}
}

func TestAcquireMaxConcurrency(t *testing.T) {
	h := newHarness(t, testConfig())
	v, err := h.pool.Add(context.Background(), pool.AddRequest{
		Provider: store.ProviderGrok, Credential: secret.New("sso=capped"), MaxConcurrency: 2,
	})
	if err != nil {
		t.Fatalf("add: %v", err)
	}
	l1 := h.acquire(pool.AcquireRequest{})
	h.acquire(pool.AcquireRequest{})
	ns := h.noSession(pool.AcquireRequest{})
	if ns.Resting {
		t.Errorf("Resting = true for a busy session; want false")
	}

	h.pool.Release(l1, pool.Result{})
	if l := h.acquire(pool.AcquireRequest{}); l.SessionID != v.ID {
		t.Errorf("lease went to %s; want %s", l.SessionID, v.ID)
	}
}

func TestAcquireTokenBucket(t *testing.T) {
	cfg := testConfig()
	cfg.RatePerSecond = 2
	h := newHarness(t, cfg)
	h.add()

	h.call(pool.AcquireRequest{}, nil)
	h.call(pool.AcquireRequest{}, nil)
	ns := h.noSession(pool.AcquireRequest{})
	if !ns.Resting {
		t.Errorf("Resting = false with an empty bucket; want true")
	}
	if ns.RetryAfter != 500*time.Millisecond {
		t.Errorf("RetryAfter = %v; want 500ms for one token at 2/s", ns.RetryAfter)
	}

	h.clock.Advance(500 * time.Millisecond)
	h.call(pool.AcquireRequest{}, nil)
}

func TestAcquireRotationThreshold(t *testing.T) {
	cfg := testConfig()
	cfg.RotationThreshold = 3
	cfg.RotationWindow = time.Hour
	h := newHarness(t, cfg)
	v := h.add()

	for range 3 {
		h.call(pool.AcquireRequest{}, nil)
	}
	got := h.get(v.ID)
	if !got.Resting || got.Status != store.StatusHealthy {
		t.Fatalf("after 3 calls: status %q resting %v; want healthy and resting", got.Status, got.Resting)
	}
	if got.LastReason != pool.ReasonRotationThreshold {
		t.Errorf("LastReason = %q; want %q", got.LastReason, pool.ReasonRotationThreshold)
	}
	ns := h.noSession(pool.AcquireRequest{})
	if !ns.Resting || ns.RetryAfter != time.Hour {
		t.Errorf("error = %+v; want resting for 1h", ns)
	}

	h.clock.Advance(time.Hour)
	h.call(pool.AcquireRequest{}, nil)
}

func TestAcquireSkipsSpentQuota(t *testing.T) {
	h := newHarness(t, testConfig())
	v := h.add()
	h.client.setProbe(upstream.Probe{Quota: map[string]upstream.ProbeQuota{
		"grok-4": {Remaining: 0, Total: 20, Window: 2 * time.Hour},
		"grok-3": {Remaining: 5, Total: 20, Window: 2 * time.Hour},
	}}, nil)
	if _, err := h.pool.Probe(context.Background(), v.ID); err != nil {
		t.Fatalf("probe: %v", err)
	}

	ns := h.noSession(pool.AcquireRequest{Model: "grok-4"})
	if !ns.Resting || ns.RetryAfter != 2*time.Hour {
		t.Errorf("error = %+v; want resting for 2h until the quota resets", ns)
	}
	h.call(pool.AcquireRequest{Model: "grok-3"}, nil)
	if got := h.get(v.ID).Quota["grok-3"].Remaining; got != 4 {
		t.Errorf("grok-3 remaining after one call = %d; want 4", got)
	}
}

func TestAcquireConcurrentUse(t *testing.T) {
	h := newHarness(t, testConfig())
	var ids []string
	for range 5 {
		ids = append(ids, h.add().ID)
	}

	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				l, err := h.pool.Acquire(context.Background(), pool.AcquireRequest{Provider: store.ProviderGrok})
				if err != nil {
					t.Errorf("acquire: %v", err)
					return
				}
				h.pool.Release(l, pool.Result{})
			}
		})
	}
	wg.Wait()

	var usage int64
	for _, id := range ids {
		v := h.get(id)
		usage += v.UsageCount
		if v.InFlight != 0 {
			t.Errorf("session %s has %d in flight after all releases", id, v.InFlight)
		}
	}
	if usage != 400 {
		t.Errorf("total usage = %d; want 400", usage)
	}
}
