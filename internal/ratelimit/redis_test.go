package ratelimit

import (
	"context"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// redisClient returns a client of the Redis at 127.0.0.1:6379 and a key
// prefix of the test's own. Without Redis the test fails under CI=true and
// is skipped otherwise.
func redisClient(t *testing.T) (*redis.Client, string) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		if os.Getenv("CI") == "true" {
			t.Fatalf("redis at 127.0.0.1:6379 is required under CI=true: %v", err)
		}
		t.Skipf("redis at 127.0.0.1:6379 unavailable: %v", err)
	}
	prefix := "grokproxy-test:" + uuid.NewString() + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		keys, _ := c.Keys(ctx, prefix+"*").Result()
		if len(keys) > 0 {
			c.Del(ctx, keys...)
		}
		c.Close()
	})
	return c, prefix
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestRedisReplicasShareUserLimit(t *testing.T) {
	c, prefix := redisClient(t)
	ctx := context.Background()
	other := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	t.Cleanup(func() { other.Close() })
	replicas := []*Redis{
		NewRedis(c, discardLog(), WithPrefix(prefix)),
		NewRedis(other, discardLog(), WithPrefix(prefix)),
	}
	const limit = 25
	var allowed, refused atomic.Int64
	var wg sync.WaitGroup
	for i := range 120 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := replicas[i%2].AllowUser(ctx, "shared-user", limit)
			if err != nil {
				t.Error(err)
				return
			}
			if d.Allowed {
				allowed.Add(1)
				return
			}
			refused.Add(1)
			if d.RetryAfter < time.Second || d.RetryAfter > Window {
				t.Errorf("RetryAfter = %v; want within [1s, 60s]", d.RetryAfter)
			}
		}()
	}
	wg.Wait()
	if got := allowed.Load(); got != limit {
		t.Errorf("two replicas allowed %d requests in total; want %d", got, limit)
	}
	if got := refused.Load(); got != 120-limit {
		t.Errorf("refused %d; want %d", got, 120-limit)
	}
}

func TestRedisAllowUserDecision(t *testing.T) {
	c, prefix := redisClient(t)
	ctx := context.Background()
	r := NewRedis(c, discardLog(), WithPrefix(prefix))
	for i := range 3 {
		d, err := r.AllowUser(ctx, "u", 3)
		if err != nil {
			t.Fatal(err)
		}
		if !d.Allowed {
			t.Fatalf("request %d refused under a limit of 3", i+1)
		}
		if want := 3 - i - 1; d.Remaining != want {
			t.Errorf("request %d: Remaining = %d; want %d", i+1, d.Remaining, want)
		}
		if d.Limit != 3 {
			t.Errorf("Limit = %d; want 3", d.Limit)
		}
	}

	d, err := r.AllowUser(ctx, "u", 3)
	if err != nil {
		t.Fatal(err)
	}
	if d.Allowed {
		t.Fatal("fourth request allowed over a limit of 3")
	}
	// The three requests ran back to back, so the oldest leaves the window
	// a little under a minute from now, which rounds up to 60s.
	if d.RetryAfter != Window {
		t.Errorf("RetryAfter = %v; want %v", d.RetryAfter, Window)
	}
	if d.Reset <= 0 || d.Reset > Window {
		t.Errorf("Reset = %v; want within (0, 60s]", d.Reset)
	}

	if d, _ := r.AllowUser(ctx, "other", 3); !d.Allowed {
		t.Error("another user refused")
	}
}

func TestRedisAllowUserWindowSlides(t *testing.T) {
	c, prefix := redisClient(t)
	ctx := context.Background()
	r := NewRedis(c, discardLog(), WithPrefix(prefix))
	key := prefix + "user:u"
	// Place two requests 59.5s in the past, as if they had been recorded
	// then, so the test need not wait for a minute.
	now, err := c.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	old := float64(now.Add(-Window + 500*time.Millisecond).UnixMicro())
	c.ZAdd(ctx, key, redis.Z{Score: old, Member: "a"}, redis.Z{Score: old, Member: "b"})

	d, err := r.AllowUser(ctx, "u", 2)
	if err != nil {
		t.Fatal(err)
	}
	if d.Allowed {
		t.Fatal("request allowed with the window full")
	}
	if d.RetryAfter != time.Second {
		t.Errorf("RetryAfter = %v; want 1s", d.RetryAfter)
	}
	time.Sleep(d.RetryAfter)
	if d, _ := r.AllowUser(ctx, "u", 2); !d.Allowed {
		t.Error("request refused after RetryAfter")
	}
}

func TestRedisAcquireSharedAcrossReplicas(t *testing.T) {
	c, prefix := redisClient(t)
	ctx := context.Background()
	a := NewRedis(c, discardLog(), WithPrefix(prefix))
	b := NewRedis(c, discardLog(), WithPrefix(prefix))

	r1, ok, err := a.Acquire(ctx, "key", "k", 2)
	if err != nil || !ok {
		t.Fatalf("Acquire on a = %v, %v; want ok", ok, err)
	}
	r2, ok, _ := b.Acquire(ctx, "key", "k", 2)
	if !ok {
		t.Fatal("Acquire on b refused under a cap of 2")
	}
	if _, ok, _ := a.Acquire(ctx, "key", "k", 2); ok {
		t.Fatal("third slot granted over a cap of 2")
	}
	r1()
	r1()
	r3, ok, _ := b.Acquire(ctx, "key", "k", 2)
	if !ok {
		t.Fatal("Acquire after release refused")
	}
	if _, ok, _ := b.Acquire(ctx, "key", "k", 2); ok {
		t.Fatal("double release freed two slots")
	}
	r2()
	r3()
	if n := c.ZCard(ctx, prefix+"lease:key:k").Val(); n != 0 {
		t.Errorf("%d leases left after every release; want 0", n)
	}
}

func TestRedisLeaseOfDeadReplicaExpires(t *testing.T) {
	c, prefix := redisClient(t)
	ctx := context.Background()
	r := NewRedis(c, discardLog(), WithPrefix(prefix))
	key := prefix + "lease:key:k"
	// A lease whose deadline passed is what a dead replica leaves behind.
	now := c.Time(ctx).Val()
	c.ZAdd(ctx, key, redis.Z{Score: float64(now.Add(-time.Second).UnixMicro()), Member: "dead"})

	release, ok, err := r.Acquire(ctx, "key", "k", 1)
	if err != nil || !ok {
		t.Fatalf("Acquire = %v, %v; want the expired lease reclaimed", ok, err)
	}
	release()
}

func TestRedisAuthFailure(t *testing.T) {
	c, prefix := redisClient(t)
	ctx := context.Background()
	r := NewRedis(c, discardLog(), WithPrefix(prefix), WithAuthFailuresPerMinute(2))
	for i := range 2 {
		blocked, _, err := r.AuthFailure(ctx, "2001:db8::1")
		if err != nil {
			t.Fatal(err)
		}
		if blocked {
			t.Fatalf("failure %d blocked under a limit of 2", i+1)
		}
	}

	blocked, wait, err := r.AuthFailure(ctx, "2001:db8::1")
	if err != nil {
		t.Fatal(err)
	}
	if !blocked {
		t.Fatal("third failure not blocked over a limit of 2")
	}
	if wait < time.Second || wait > Window {
		t.Errorf("retryAfter = %v; want within [1s, 60s]", wait)
	}

	if blocked, _, _ := r.AuthBlocked(ctx, "2001:db8::1"); !blocked {
		t.Error("AuthBlocked false over the limit")
	}
	if blocked, _, _ := r.AuthBlocked(ctx, "2001:db8::2"); blocked {
		t.Error("another address blocked")
	}

	for range 50 {
		r.AuthFailure(ctx, "2001:db8::1")
	}
	if n := c.ZCard(ctx, prefix+"auth:2001:db8::1").Val(); n != 3 {
		t.Errorf("failure log holds %d entries; want 3 (limit+1)", n)
	}
}

func TestRedisSessionBucket(t *testing.T) {
	c, prefix := redisClient(t)
	ctx := context.Background()
	r := NewRedis(c, discardLog(), WithPrefix(prefix))
	for i := range 3 {
		ok, err := r.AllowSession(ctx, "s", 3)
		if err != nil || !ok {
			t.Fatalf("token %d = %v, %v; want a full bucket of 3", i+1, ok, err)
		}
	}
	// A fourth request within a third of a second finds the bucket empty;
	// this holds unless the three calls above took that long.
	if ok, _ := r.AllowSession(ctx, "s", 3); ok {
		t.Fatal("fourth token taken from a bucket of 3")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if ok, _ := r.AllowSession(ctx, "s", 3); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("bucket did not refill within 5s at 3 per second")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRedisLeaseOfStoppedReplicaFreesAfterTTL(t *testing.T) {
	c, prefix := redisClient(t)
	ctx := context.Background()
	const ttl = 600 * time.Millisecond
	live := NewRedis(c, discardLog(), WithPrefix(prefix), WithLeaseTTL(ttl))

	// A lease that is renewed outlives its TTL.
	release, ok, err := live.Acquire(ctx, "key", "k", 1)
	if err != nil || !ok {
		t.Fatalf("Acquire = %v, %v", ok, err)
	}
	time.Sleep(3 * ttl)
	if _, ok, _ := live.Acquire(ctx, "key", "k", 1); ok {
		t.Fatal("a renewed lease lost its slot")
	}
	release()

	// A replica that loses Redis stops renewing and cannot release.
	dc := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	dead := NewRedis(dc, discardLog(), WithPrefix(prefix), WithLeaseTTL(ttl))
	deadRelease, ok, err := dead.Acquire(ctx, "key", "k", 1)
	if err != nil || !ok {
		t.Fatalf("Acquire on the doomed replica = %v, %v", ok, err)
	}
	dc.Close()
	deadRelease()
	if _, ok, _ := live.Acquire(ctx, "key", "k", 1); ok {
		t.Fatal("slot free before the dead replica's lease ran out")
	}

	deadline := time.Now().Add(10 * time.Second)
	for {
		r, ok, err := live.Acquire(ctx, "key", "k", 1)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			r()
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the dead replica's lease never ran out")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
