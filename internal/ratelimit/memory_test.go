package ratelimit

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// clock is a settable time source for tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestMemoryAllowUserExactLimit(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	m := NewMemory(clk.now, 10)
	const limit = 5

	for i := range limit {
		d, err := m.AllowUser(ctx, "u1", limit)
		if err != nil {
			t.Fatal(err)
		}
		if !d.Allowed {
			t.Fatalf("request %d refused; want allowed", i+1)
		}
		if d.Limit != limit {
			t.Errorf("request %d: Limit = %d; want %d", i+1, d.Limit, limit)
		}
		if want := limit - i - 1; d.Remaining != want {
			t.Errorf("request %d: Remaining = %d; want %d", i+1, d.Remaining, want)
		}
		if d.Reset != Window {
			t.Errorf("request %d: Reset = %v; want %v", i+1, d.Reset, Window)
		}
		clk.advance(1500 * time.Millisecond)
	}

	d, err := m.AllowUser(ctx, "u1", limit)
	if err != nil {
		t.Fatal(err)
	}
	if d.Allowed {
		t.Fatal("request over the limit allowed")
	}
	if d.Remaining != 0 {
		t.Errorf("Remaining = %d; want 0", d.Remaining)
	}
	// The first request was 7.5s ago, so it leaves the window in 52.5s,
	// which rounds up to 53s.
	if d.RetryAfter != 53*time.Second {
		t.Errorf("RetryAfter = %v; want 53s", d.RetryAfter)
	}
	if d.RetryAfter < time.Second || d.RetryAfter > Window {
		t.Errorf("RetryAfter = %v; want within [1s, 60s]", d.RetryAfter)
	}

	clk.advance(d.RetryAfter - time.Second)
	if d, _ := m.AllowUser(ctx, "u1", limit); d.Allowed {
		t.Error("request one second before RetryAfter allowed")
	}
	clk.advance(time.Second)
	if d, _ := m.AllowUser(ctx, "u1", limit); !d.Allowed {
		t.Error("request after RetryAfter refused")
	}
}

func TestMemoryAllowUserSeparateUsers(t *testing.T) {
	ctx := context.Background()
	m := NewMemory(newClock().now, 10)
	if d, _ := m.AllowUser(ctx, "a", 1); !d.Allowed {
		t.Fatal("first request of a refused")
	}
	if d, _ := m.AllowUser(ctx, "a", 1); d.Allowed {
		t.Fatal("second request of a allowed over a limit of 1")
	}
	if d, _ := m.AllowUser(ctx, "b", 1); !d.Allowed {
		t.Fatal("first request of b refused because of a")
	}
}

func TestMemoryAllowUserUnlimited(t *testing.T) {
	ctx := context.Background()
	m := NewMemory(newClock().now, 10)
	for range 1000 {
		d, err := m.AllowUser(ctx, "u", 0)
		if err != nil || !d.Allowed {
			t.Fatalf("AllowUser(limit 0) = %+v, %v; want allowed", d, err)
		}
		if d.Limit != 0 {
			t.Fatalf("Limit = %d; want 0", d.Limit)
		}
	}
}

func TestMemoryRetryAfterBurst(t *testing.T) {
	// Requests back to back: the oldest leaves the window a full minute
	// later, so RetryAfter is 60s.
	ctx := context.Background()
	clk := newClock()
	m := NewMemory(clk.now, 10)
	for range 3 {
		m.AllowUser(ctx, "u", 3)
	}
	d, _ := m.AllowUser(ctx, "u", 3)
	if d.Allowed {
		t.Fatal("fourth request allowed over a limit of 3")
	}
	if d.RetryAfter != Window {
		t.Errorf("RetryAfter = %v; want %v", d.RetryAfter, Window)
	}
	clk.advance(d.RetryAfter)
	d, _ = m.AllowUser(ctx, "u", 3)
	if !d.Allowed {
		t.Fatal("request after RetryAfter refused")
	}
	if d.Remaining != 2 {
		t.Errorf("Remaining = %d; want 2 once the window emptied", d.Remaining)
	}
}

func TestMemoryRetryAfterRoundsUp(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	m := NewMemory(clk.now, 10)
	m.AllowUser(ctx, "u", 1)
	clk.advance(Window - 200*time.Millisecond)
	d, _ := m.AllowUser(ctx, "u", 1)
	if d.Allowed {
		t.Fatal("request inside the window allowed")
	}
	if d.RetryAfter != time.Second {
		t.Errorf("RetryAfter = %v; want 1s for a 200ms wait", d.RetryAfter)
	}
}

func TestMemoryLimitLowered(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	m := NewMemory(clk.now, 10)
	for range 5 {
		m.AllowUser(ctx, "u", 5)
		clk.advance(10 * time.Second)
	}
	// Entries at -50s, -40s, -30s, -20s and -10s. Under a limit of 2, at
	// most one may remain, so four must leave, the fourth at -20s.
	d, _ := m.AllowUser(ctx, "u", 2)
	if d.Allowed {
		t.Fatal("request allowed over a lowered limit")
	}
	if d.RetryAfter != 40*time.Second {
		t.Errorf("RetryAfter = %v; want 40s", d.RetryAfter)
	}
}

func TestMemoryAcquireRelease(t *testing.T) {
	ctx := context.Background()
	m := NewMemory(newClock().now, 10)

	r1, ok, err := m.Acquire(ctx, "key", "k1", 2)
	if err != nil || !ok {
		t.Fatalf("first Acquire = %v, %v; want ok", ok, err)
	}
	r2, ok, _ := m.Acquire(ctx, "key", "k1", 2)
	if !ok {
		t.Fatal("second Acquire refused under a cap of 2")
	}
	if _, ok, _ := m.Acquire(ctx, "key", "k1", 2); ok {
		t.Fatal("third Acquire allowed over a cap of 2")
	}
	if _, ok, _ := m.Acquire(ctx, "key", "k2", 2); !ok {
		t.Fatal("Acquire of another id refused")
	}
	if _, ok, _ := m.Acquire(ctx, "session", "k1", 2); !ok {
		t.Fatal("Acquire of the same id in another scope refused")
	}

	r1()
	r1() // a second call must not free another slot
	r3, ok, _ := m.Acquire(ctx, "key", "k1", 2)
	if !ok {
		t.Fatal("Acquire after release refused")
	}
	if _, ok, _ := m.Acquire(ctx, "key", "k1", 2); ok {
		t.Fatal("double release freed two slots")
	}
	r2()
	r3()
	for i := range 2 {
		if _, ok, _ := m.Acquire(ctx, "key", "k1", 2); !ok {
			t.Fatalf("Acquire %d after releasing all refused", i+1)
		}
	}
}

func TestMemoryAcquireUncapped(t *testing.T) {
	m := NewMemory(newClock().now, 10)
	for range 100 {
		release, ok, err := m.Acquire(context.Background(), "key", "k", 0)
		if err != nil || !ok || release == nil {
			t.Fatalf("Acquire(max 0) = %v, %v; want ok with a release func", ok, err)
		}
	}
}

func TestMemoryAuthFailureBlocksIP(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	m := NewMemory(clk.now, 3)

	for i := range 3 {
		blocked, _, err := m.AuthFailure(ctx, "192.0.2.1")
		if err != nil {
			t.Fatal(err)
		}
		if blocked {
			t.Fatalf("failure %d blocked under a limit of 3", i+1)
		}
		clk.advance(time.Second)
	}
	if blocked, _, _ := m.AuthBlocked(ctx, "192.0.2.1"); blocked {
		t.Fatal("AuthBlocked true at the limit")
	}
	blocked, wait, _ := m.AuthFailure(ctx, "192.0.2.1")
	if !blocked {
		t.Fatal("fourth failure not blocked over a limit of 3")
	}
	// The first failure was 3s ago and leaves the window in 57s.
	if wait != 57*time.Second {
		t.Errorf("retryAfter = %v; want 57s", wait)
	}
	if blocked, _, _ := m.AuthBlocked(ctx, "192.0.2.1"); !blocked {
		t.Error("AuthBlocked false after the limit was passed")
	}
	if blocked, _, _ := m.AuthBlocked(ctx, "192.0.2.2"); blocked {
		t.Error("another address is blocked")
	}

	clk.advance(wait)
	if blocked, _, _ := m.AuthBlocked(ctx, "192.0.2.1"); blocked {
		t.Error("still blocked after retryAfter")
	}
}

func TestMemoryAuthBlockedRecordsNothing(t *testing.T) {
	ctx := context.Background()
	m := NewMemory(newClock().now, 1)
	for range 10 {
		m.AuthBlocked(ctx, "192.0.2.9")
	}
	if blocked, _, _ := m.AuthFailure(ctx, "192.0.2.9"); blocked {
		t.Fatal("first failure blocked after AuthBlocked calls")
	}
}

func TestMemoryAuthFailureFloodBounded(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	m := NewMemory(clk.now, 2)
	for range 1000 {
		m.AuthFailure(ctx, "192.0.2.3")
	}
	found := false
	for i := range m.shards {
		if l := m.shards[i].logs["auth\x00192.0.2.3"]; l != nil {
			found = true
			if l.len() != 3 {
				t.Errorf("log holds %d failures; want 3 (limit+1)", l.len())
			}
		}
	}
	if !found {
		t.Error("no failure log for the address")
	}
	// A flood keeps the address blocked for a full window after its end.
	clk.advance(Window - time.Second)
	if blocked, _, _ := m.AuthBlocked(ctx, "192.0.2.3"); !blocked {
		t.Error("unblocked before a window passed since the flood")
	}
}

func TestMemoryAuthFailureDisabled(t *testing.T) {
	m := NewMemory(newClock().now, 0)
	for range 100 {
		if blocked, _, _ := m.AuthFailure(context.Background(), "192.0.2.4"); blocked {
			t.Fatal("blocked with the limit disabled")
		}
	}
}

func TestMemorySessionBucket(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	m := NewMemory(clk.now, 10)

	for i := range 4 {
		ok, err := m.AllowSession(ctx, "s1", 4)
		if err != nil || !ok {
			t.Fatalf("token %d = %v, %v; want a full bucket of 4", i+1, ok, err)
		}
	}
	if ok, _ := m.AllowSession(ctx, "s1", 4); ok {
		t.Fatal("fifth token taken from a bucket of 4")
	}
	if ok, _ := m.AllowSession(ctx, "s2", 4); !ok {
		t.Fatal("another session's bucket is empty")
	}

	clk.advance(250 * time.Millisecond) // refills one token at 4 per second
	if ok, _ := m.AllowSession(ctx, "s1", 4); !ok {
		t.Fatal("no token after a quarter second at 4 per second")
	}
	if ok, _ := m.AllowSession(ctx, "s1", 4); ok {
		t.Fatal("second token after a quarter second at 4 per second")
	}

	clk.advance(time.Hour) // refill stops at the capacity
	for range 4 {
		m.AllowSession(ctx, "s1", 4)
	}
	if ok, _ := m.AllowSession(ctx, "s1", 4); ok {
		t.Fatal("bucket grew past its capacity during a long rest")
	}
}

func TestMemorySessionSlowRate(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	m := NewMemory(clk.now, 10)
	if ok, _ := m.AllowSession(ctx, "s", 0.5); !ok {
		t.Fatal("first request refused; a bucket holds at least one token")
	}
	if ok, _ := m.AllowSession(ctx, "s", 0.5); ok {
		t.Fatal("second request allowed at 0.5 per second")
	}
	clk.advance(2 * time.Second)
	if ok, _ := m.AllowSession(ctx, "s", 0.5); !ok {
		t.Fatal("request refused after 2s at 0.5 per second")
	}
}

func TestMemoryEvictsIdleEntries(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	m := NewMemory(clk.now, 10)
	for i := range 200 {
		id := fmt.Sprintf("id-%d", i)
		m.AllowUser(ctx, id, 10)
		m.AllowSession(ctx, id, 5)
		m.AuthFailure(ctx, id)
	}
	clk.advance(2 * Window)
	// Touch every shard so each sweeps.
	for i := range 2000 {
		release, _, _ := m.Acquire(ctx, "probe", fmt.Sprintf("probe-%d", i), 1)
		release()
	}
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		n := len(sh.logs) + len(sh.buckets) + len(sh.leases)
		sh.mu.Unlock()
		if n != 0 {
			t.Errorf("shard %d keeps %d idle entries after two windows", i, n)
		}
	}
}

func TestMemoryConcurrentExactLimit(t *testing.T) {
	ctx := context.Background()
	m := NewMemory(newClock().now, 10)
	const limit = 50
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if d, _ := m.AllowUser(ctx, "u", limit); d.Allowed {
				mu.Lock()
				allowed++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if allowed != limit {
		t.Fatalf("allowed %d of 200 concurrent requests; want %d", allowed, limit)
	}
}
