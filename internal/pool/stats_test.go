package pool_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/grokproxy/grokproxy/internal/keyring"
	"github.com/grokproxy/grokproxy/internal/pool"
	"github.com/grokproxy/grokproxy/internal/secret"
	"github.com/grokproxy/grokproxy/internal/store"
	"github.com/grokproxy/grokproxy/internal/store/sqlite"
	"github.com/grokproxy/grokproxy/internal/upstream"
)

func TestStats(t *testing.T) {
	h := newHarness(t, testConfig())
	a := h.add()
	b := h.add()
	c := h.add()
	h.client.setProbe(upstream.Probe{Quota: map[string]upstream.ProbeQuota{
		"grok-3": {Remaining: 10, Total: 20, Window: time.Hour},
	}}, nil)
	for _, id := range []string{a.ID, b.ID} {
		if _, err := h.pool.Probe(context.Background(), id); err != nil {
			t.Fatalf("probe: %v", err)
		}
	}
	h.call(pool.AcquireRequest{Prefer: a.ID, Model: "grok-3"}, nil)
	h.call(pool.AcquireRequest{Prefer: a.ID}, upstreamErr(upstream.OutcomeUnavailable))
	h.call(pool.AcquireRequest{Prefer: b.ID}, upstreamErr(upstream.OutcomeRateLimited))
	if _, err := h.pool.Quarantine(context.Background(), c.ID, "test"); err != nil {
		t.Fatal(err)
	}

	st := h.pool.Stats()
	if st.Sessions[store.StatusHealthy] != 2 || st.Sessions["resting"] != 1 || st.Sessions[store.StatusQuarantined] != 1 {
		t.Errorf("Sessions = %v; want 2 healthy, 1 resting, 1 quarantined", st.Sessions)
	}
	if st.Sessions[store.StatusExpired] != 0 || len(st.Sessions) != 5 {
		t.Errorf("Sessions = %v; want every status present", st.Sessions)
	}
	if st.Usable != 1 {
		t.Errorf("Usable = %d; want 1", st.Usable)
	}
	g := st.Providers[store.ProviderGrok]
	if g.Requests != 3 || g.Successes != 1 || g.Failures != 1 || g.FailureRate != 0.5 {
		t.Errorf("grok requests %d successes %d failures %d rate %v; want 3, 1, 1, 0.5",
			g.Requests, g.Successes, g.Failures, g.FailureRate)
	}
	if g.Circuit != pool.CircuitClosed || g.Sessions != 3 {
		t.Errorf("grok circuit %q sessions %d; want closed, 3", g.Circuit, g.Sessions)
	}
	q := g.Quota["grok-3"]
	if q.Sessions != 2 || q.Remaining != 19 || q.Total != 40 || q.NextResetAt == nil {
		t.Errorf("grok-3 quota = %+v; want 19 of 40 over 2 sessions with a reset time", q)
	}
}

// BenchmarkAcquire measures selection among 10,000 sessions, most of them
// usable.
func BenchmarkAcquire(b *testing.B) {
	kr, _ := keyring.Parse(keyring.Generate())
	st := sqlite.OpenTest(b)
	cfg := pool.DefaultConfig()
	cfg.RatePerSecond = 0
	p := pool.New(cfg, st, kr, nil, nil, nil, nil)
	ctx := context.Background()
	for i := range 10_000 {
		cookie := fmt.Sprintf("sso=bench-%d", i)
		if _, err := p.Add(ctx, pool.AddRequest{Provider: store.ProviderGrok, Credential: secret.New(cookie)}); err != nil {
			b.Fatal(err)
		}
	}
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
