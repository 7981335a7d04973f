package pool_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grokproxy/grokproxy/internal/keyring"
	"github.com/grokproxy/grokproxy/internal/pool"
	"github.com/grokproxy/grokproxy/internal/secret"
	"github.com/grokproxy/grokproxy/internal/store"
	"github.com/grokproxy/grokproxy/internal/store/sqlite"
	"github.com/grokproxy/grokproxy/internal/upstream"
)

// addCapped adds a grok session with the given cap and weight.
func (h *harness) addCapped(maxConcurrency, weight int) pool.View {
	h.t.Helper()
	h.added++
	cookie := fmt.Sprintf("sso=capped-%d-secret", h.added)
	v, err := h.pool.Add(context.Background(), pool.AddRequest{
		Provider: store.ProviderGrok, Credential: secret.New(cookie), DedupKey: cookie,
		MaxConcurrency: maxConcurrency, Weight: weight,
	})
	if err != nil {
		h.t.Fatalf("add session: %v", err)
	}
	return v
}

// shareConfig is testConfig without the rotation cap, so that no session
// rests however many calls it takes.
func shareConfig() pool.Config {
	cfg := testConfig()
	cfg.RotationThreshold = 0
	return cfg
}

// acquireWhenFree retries Acquire while every session is busy, which
// happens for a moment when concurrent requests take the last slots.
func acquireWhenFree(h *harness) (*pool.Lease, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		l, err := h.pool.Acquire(context.Background(), pool.AcquireRequest{Provider: store.ProviderGrok})
		var ns *pool.NoSessionError
		if err == nil || !errors.As(err, &ns) || ns.Resting || time.Now().After(deadline) {
			return l, err
		}
		time.Sleep(time.Millisecond)
	}
}

func TestConcurrentLeasesRespectMaxConcurrency(t *testing.T) {
	const sessions, capacity, workers, rounds = 4, 3, 16, 200
	h := newHarness(t, shareConfig())
	holding := make(map[string]*atomic.Int32)
	for range sessions {
		holding[h.addCapped(capacity, 1).ID] = new(atomic.Int32)
	}

	var leased atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range rounds {
				l, err := acquireWhenFree(h)
				if err != nil {
					t.Errorf("acquire: %v", err)
					return
				}
				leased.Add(1)
				if n := holding[l.SessionID].Add(1); n > capacity {
					t.Errorf("session %s holds %d leases; its cap is %d", l.SessionID, n, capacity)
				}
				runtime.Gosched() // hold the lease while others try for it
				holding[l.SessionID].Add(-1)
				h.pool.Release(l, pool.Result{})
			}
		})
	}
	wg.Wait()

	var usage int64
	for id := range holding {
		v := h.get(id)
		usage += v.UsageCount
		if v.InFlight != 0 {
			t.Errorf("session %s has %d in flight after every release; want 0", id, v.InFlight)
		}
	}
	if usage != leased.Load() || usage != workers*rounds {
		t.Errorf("usage = %d, leases = %d; want both %d", usage, leased.Load(), workers*rounds)
	}
}

func TestConcurrentLeasesFillEverySlotExactly(t *testing.T) {
	const sessions, capacity = 4, 3
	h := newHarness(t, shareConfig())
	var ids []string
	for range sessions {
		ids = append(ids, h.addCapped(capacity, 1).ID)
	}

	// As many requests as there are slots, all at once: each must get a
	// slot, and no session may end up past its cap.
	leases := make([]*pool.Lease, sessions*capacity)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range leases {
		wg.Go(func() {
			<-start
			l, err := acquireWhenFree(h)
			if err != nil {
				t.Errorf("acquire: %v", err)
				return
			}
			leases[i] = l
		})
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		return
	}

	held := make(map[string]int)
	for _, l := range leases {
		held[l.SessionID]++
	}
	for _, id := range ids {
		if v := h.get(id); v.InFlight != capacity || held[id] != capacity {
			t.Errorf("session %s: in flight %d, leases held %d; want %d and %d", id, v.InFlight, held[id], capacity, capacity)
		}
	}
	if ns := h.noSession(pool.AcquireRequest{}); ns.Resting {
		t.Errorf("Resting = true with every slot taken; want false")
	}

	for _, l := range leases {
		wg.Go(func() { h.pool.Release(l, pool.Result{}) })
	}
	wg.Wait()
	for _, id := range ids {
		if v := h.get(id); v.InFlight != 0 {
			t.Errorf("session %s has %d in flight after every release; want 0", id, v.InFlight)
		}
	}
}

func TestReleaseTwiceConcurrentlyCountsOnce(t *testing.T) {
	h := newHarness(t, shareConfig())
	v := h.add()
	l := h.acquire(pool.AcquireRequest{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { h.pool.Release(l, pool.Result{}) })
	}
	wg.Wait()
	if got := h.get(v.ID); got.InFlight != 0 || got.SuccessCount != 1 {
		t.Errorf("in flight %d, successes %d; want 0 and 1", got.InFlight, got.SuccessCount)
	}
}

// shares makes n sequential calls of model and counts them by session.
func shares(h *harness, n int, model string) map[string]int {
	h.t.Helper()
	got := make(map[string]int)
	for range n {
		got[h.call(pool.AcquireRequest{Model: model}, nil)]++
	}
	return got
}

func TestTwoEqualSessionsShareTraffic(t *testing.T) {
	h := newHarness(t, shareConfig())
	a, b := h.add(), h.add()
	got := shares(h, 1000, "grok-3")
	for _, id := range []string{a.ID, b.ID} {
		if got[id] < 300 || got[id] > 700 {
			t.Errorf("session %s served %d of 1000 calls; want 300 to 700", id, got[id])
		}
	}
}

// probeQuota sets the grok-3 quota of session id through a probe.
func probeQuota(h *harness, id string, remaining, total int) {
	h.t.Helper()
	h.client.setProbe(upstream.Probe{Quota: map[string]upstream.ProbeQuota{
		"grok-3": {Remaining: remaining, Total: total, Window: 2 * time.Hour},
	}}, nil)
	if _, err := h.pool.Probe(context.Background(), id); err != nil {
		h.t.Fatalf("probe: %v", err)
	}
}

func TestUnknownQuotaDoesNotTakeAllTraffic(t *testing.T) {
	h := newHarness(t, shareConfig())
	known, unknown := h.add(), h.add()
	probeQuota(h, known.ID, 9000, 10000)

	got := shares(h, 1000, "grok-3")
	for _, id := range []string{known.ID, unknown.ID} {
		if got[id] < 300 || got[id] > 700 {
			t.Errorf("session %s served %d of 1000 calls; want 300 to 700", id, got[id])
		}
	}
}

func TestLowQuotaGetsSmallerShare(t *testing.T) {
	h := newHarness(t, shareConfig())
	low, full := h.add(), h.add()
	probeQuota(h, low.ID, 1000, 10000)

	// A tenth of the quota left against a full one: about 1 call in 11.
	got := shares(h, 1000, "grok-3")
	if got[low.ID] == 0 || got[low.ID] > 200 {
		t.Errorf("session with a tenth of its quota served %d of 1000 calls; want 1 to 200", got[low.ID])
	}
	if got[full.ID] < 800 {
		t.Errorf("session with its full quota served %d of 1000 calls; want at least 800", got[full.ID])
	}
}

func TestWeightSetsShare(t *testing.T) {
	h := newHarness(t, shareConfig())
	heavy, light := h.addCapped(0, 3), h.addCapped(0, 1)
	got := shares(h, 1000, "")
	// Weight 3 against 1 expects 750 calls.
	if got[heavy.ID] < 650 || got[heavy.ID] > 850 {
		t.Errorf("session of weight 3 served %d of 1000 calls; want 650 to 850", got[heavy.ID])
	}
	if got[light.ID] != 1000-got[heavy.ID] {
		t.Errorf("session of weight 1 served %d calls; want the other %d", got[light.ID], 1000-got[heavy.ID])
	}
}

// parallelPool returns a pool of n grok sessions without a rate or
// rotation cap.
func parallelPool(b *testing.B, n int) *pool.Pool {
	b.Helper()
	kr, err := keyring.Parse(keyring.Generate())
	if err != nil {
		b.Fatal(err)
	}
	cfg := pool.DefaultConfig()
	cfg.RatePerSecond = 0
	cfg.RotationThreshold = 0
	p := pool.New(cfg, sqlite.OpenTest(b), kr, nil, nil, nil, nil)
	for i := range n {
		cookie := fmt.Sprintf("sso=bench-%d", i)
		if _, err := p.Add(context.Background(), pool.AddRequest{Provider: store.ProviderGrok, Credential: secret.New(cookie)}); err != nil {
			b.Fatal(err)
		}
	}
	return p
}

// BenchmarkAcquireParallelFewSessions measures Acquire and Release from
// every core over four sessions, where requests meet on the same sessions
// and on the provider's circuit.
func BenchmarkAcquireParallelFewSessions(b *testing.B) {
	p := parallelPool(b, 4)
	ctx := context.Background()
	req := pool.AcquireRequest{Provider: store.ProviderGrok, Model: "grok-3"}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l, err := p.Acquire(ctx, req)
			if err != nil {
				b.Fatal(err)
			}
			p.Release(l, pool.Result{})
		}
	})
}
