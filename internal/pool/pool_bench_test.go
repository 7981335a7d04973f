package pool_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/grokproxy/grokproxy/internal/keyring"
	"github.com/grokproxy/grokproxy/internal/pool"
	"github.com/grokproxy/grokproxy/internal/secret"
	"github.com/grokproxy/grokproxy/internal/store"
	"github.com/grokproxy/grokproxy/internal/store/sqlite"
	"github.com/grokproxy/grokproxy/internal/upstream"
)

// BenchmarkAcquireRelease measures one session selection and its release,
// the pool's share of every request, over pools of 10 and 10,000
// sessions. Selection should not grow with the pool. With -short the
// large pool has 1,000 sessions, since adding them dominates a quick run.
func BenchmarkAcquireRelease(b *testing.B) {
	large := 10_000
	if testing.Short() {
		large = 1_000
	}
	for _, n := range []int{10, large} {
		b.Run(fmt.Sprintf("sessions=%d", n), func(b *testing.B) {
			p := benchPool(b, n)
			ctx := context.Background()
			req := pool.AcquireRequest{Provider: store.ProviderGrok, Model: "fast"}
			seen := make(map[string]bool)
			leases := 0
			b.ReportAllocs()
			for b.Loop() {
				leases++
				l, err := p.Acquire(ctx, req)
				if err != nil {
					b.Fatalf("Acquire: %v", err)
				}
				seen[l.SessionID] = true
				p.Release(l, pool.Result{Latency: 100 * time.Millisecond})
			}
			if leases >= 100 && len(seen) < 2 {
				b.Fatalf("every lease went to %d session; want traffic spread over several", len(seen))
			}
		})
	}
}

// benchPool returns a loaded pool of n healthy grok sessions with no rate
// or rotation cap, over a SQLite store.
func benchPool(b *testing.B, n int) *pool.Pool {
	b.Helper()
	kr, err := keyring.Parse(keyring.Generate())
	if err != nil {
		b.Fatalf("parse keyring: %v", err)
	}
	st := sqlite.OpenTest(b)
	cfg := pool.DefaultConfig()
	cfg.RatePerSecond = 0
	cfg.RotationThreshold = 0
	clients := map[string]upstream.Client{store.ProviderGrok: &fakeClient{}}
	p := pool.New(cfg, st, kr, clients, prometheus.NewRegistry(), time.Now, nil)
	if err := p.Load(context.Background()); err != nil {
		b.Fatalf("load pool: %v", err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.Close(ctx)
	})
	for i := range n {
		cookie := fmt.Sprintf("sso=bench-%d-secret", i)
		_, err := p.Add(context.Background(), pool.AddRequest{
			Provider: store.ProviderGrok, Credential: secret.New(cookie), DedupKey: cookie,
		})
		if err != nil {
			b.Fatalf("add session %d: %v", i, err)
		}
	}
	return p
}
