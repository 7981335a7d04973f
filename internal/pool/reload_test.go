package pool_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/grokproxy/grokproxy/internal/pool"
	"github.com/grokproxy/grokproxy/internal/secret"
	"github.com/grokproxy/grokproxy/internal/store"
	"github.com/grokproxy/grokproxy/internal/upstream"
)

// other returns a second pool over the harness's store, as the CLI or
// another replica would hold.
func (h *harness) other() *pool.Pool {
	h.t.Helper()
	clients := map[string]upstream.Client{store.ProviderGrok: h.client}
	p := pool.New(h.cfg, h.st, h.kr, clients, prometheus.NewRegistry(), h.clock.Now, nil)
	h.t.Cleanup(func() { p.Close(context.Background()) })
	return p
}

func TestReloadAddsRowsOfOtherProcess(t *testing.T) {
	h := newHarness(t, testConfig())
	mine := h.add()
	cli := h.other()
	v, err := cli.Add(context.Background(), pool.AddRequest{Provider: store.ProviderGrok,
		Credential: secret.New("sso=imported-secret"), DedupKey: "sso=imported-secret"})
	if err != nil {
		t.Fatalf("add through the second pool: %v", err)
	}
	if _, ok := h.pool.Get(v.ID); ok {
		t.Fatal("the session is known before a reload")
	}

	if err := h.pool.Reload(context.Background()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if _, ok := h.pool.Get(v.ID); !ok {
		t.Fatal("the imported session is missing after a reload")
	}
	if _, ok := h.pool.Get(mine.ID); !ok {
		t.Fatal("the pool's own session left after a reload")
	}
	l := h.acquire(pool.AcquireRequest{Prefer: v.ID})
	if l.SessionID != v.ID || l.Credential.Secret.Reveal() != "sso=imported-secret" {
		t.Errorf("lease %s; want the imported session with its decrypted cookie", l.SessionID)
	}
	h.pool.Release(l, pool.Result{})
}

func TestReloadDropsDeletedRows(t *testing.T) {
	h := newHarness(t, testConfig())
	gone := h.add()
	kept := h.add()
	if err := h.st.DeleteSession(context.Background(), gone.ID); err != nil {
		t.Fatal(err)
	}
	if err := h.pool.Reload(context.Background()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if _, ok := h.pool.Get(gone.ID); ok {
		t.Error("a session deleted from the store is still in the pool")
	}
	if _, ok := h.pool.Get(kept.ID); !ok {
		t.Error("a stored session left the pool")
	}
}

func TestReloadAdoptsStatusOfOtherProcess(t *testing.T) {
	h := newHarness(t, testConfig())
	v := h.add()
	h.flush()
	replica := h.other()
	if err := replica.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := replica.Quarantine(context.Background(), v.ID, "seen failing elsewhere"); err != nil {
		t.Fatalf("quarantine on the replica: %v", err)
	}

	if err := h.pool.Reload(context.Background()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	got := h.get(v.ID)
	if got.Status != store.StatusQuarantined || got.StatusReason != "seen failing elsewhere" {
		t.Errorf("status %q reason %q; want the replica's quarantine", got.Status, got.StatusReason)
	}
	if n := h.pool.Usable(store.ProviderGrok); n != 0 {
		t.Errorf("Usable = %d; want 0", n)
	}
}

func TestReloadKeepsUnsavedChange(t *testing.T) {
	h := newHarness(t, testConfig())
	v := h.add()
	h.flush()
	// A rest recorded just before a reload survives it, whether or not
	// the background writer has saved it yet.
	h.call(pool.AcquireRequest{}, upstreamErr(upstream.OutcomeRateLimited))
	if err := h.pool.Reload(context.Background()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if got := h.get(v.ID); !got.Resting {
		t.Errorf("the session stopped resting after a reload")
	}
}

// countingClient records how many probes run at once. Each probe takes
// delay and is counted when it ends.
type countingClient struct {
	fakeClient
	delay   time.Duration
	running atomic.Int32
	peak    atomic.Int32
}

func (c *countingClient) Probe(ctx context.Context, cred upstream.Credential) (upstream.Probe, error) {
	n := c.running.Add(1)
	defer c.running.Add(-1)
	for {
		old := c.peak.Load()
		if n <= old || c.peak.CompareAndSwap(old, n) {
			break
		}
	}
	time.Sleep(c.delay)
	return c.fakeClient.Probe(ctx, cred)
}

func (c *countingClient) distinct() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[string]bool{}
	for _, s := range c.secrets {
		seen[s] = true
	}
	return len(seen)
}

func TestHealthCheckPacesProbes(t *testing.T) {
	cfg := testConfig()
	cfg.HealthCheckInterval = 20 * time.Millisecond
	h := newHarness(t, cfg)
	for range 150 {
		v := h.add()
		if _, err := h.pool.Quarantine(context.Background(), v.ID, "test"); err != nil {
			t.Fatal(err)
		}
	}
	cc := &countingClient{delay: 50 * time.Millisecond}
	cc.setProbe(upstream.Probe{}, upstreamErr(upstream.OutcomeUnavailable))
	p := pool.New(cfg, h.st, h.kr, map[string]upstream.Client{store.ProviderGrok: cc}, nil, h.clock.Now, nil)
	if err := p.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		p.Run(ctx)
		close(done)
	}()
	defer func() {
		cancel()
		<-done
	}()

	// One pass probes 64 of the 150 sessions. The next pass starts only
	// after the last of them ends, and its first probes take 50ms.
	waitFor(t, "first pass", func() bool { return cc.probeCount() >= 64 })
	if n := cc.probeCount(); n != 64 {
		t.Errorf("probes of the first pass = %d; want 64", n)
	}
	// The second pass takes the sessions not probed yet.
	waitFor(t, "second pass", func() bool { return cc.probeCount() >= 128 })
	if n := cc.distinct(); n < 128 {
		t.Errorf("sessions probed in two passes = %d; want 128 different ones", n)
	}
	if peak := cc.peak.Load(); peak > 4 {
		t.Errorf("probes at once = %d; want at most 4", peak)
	}
}
