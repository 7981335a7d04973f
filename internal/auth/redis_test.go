package auth

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/grokproxy/grokproxy/internal/store"
)

// redisClient returns a client of the Redis at 127.0.0.1:6379. Without
// Redis the test fails under CI=true and is skipped otherwise.
func redisClient(t *testing.T) *redis.Client {
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
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRevocationPushedThroughRedis(t *testing.T) {
	ctx := context.Background()
	c := redisClient(t)
	f := newFixture(t, Config{})
	f.a.SetRedis(c)
	// A poll this slow cannot deliver the revocation within the test, so
	// only the Redis message can.
	replica, _ := f.authenticator(Config{RevocationPoll: time.Hour})
	replica.SetRedis(c)
	u := f.user(t, store.User{Name: "pia", Active: true})
	k, text := f.key(t, u.ID)
	if _, err := replica.Authenticate(ctx, text); err != nil {
		t.Fatal(err)
	}

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	before := c.PubSubNumSub(ctx, RevokedChannel).Val()[RevokedChannel]
	go replica.Run(runCtx)
	waitFor(t, "replica subscription", func() bool {
		return c.PubSubNumSub(ctx, RevokedChannel).Val()[RevokedChannel] > before
	})

	if err := f.a.RevokeKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "revocation on the replica", func() bool {
		_, err := replica.Authenticate(ctx, text)
		return errors.Is(err, ErrInvalidKey)
	})
}

// waitFor polls cond until it holds, failing t after five seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen within 5s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestUserChangePushedThroughRedis(t *testing.T) {
	ctx := context.Background()
	c := redisClient(t)
	f := newFixture(t, Config{})
	f.a.SetRedis(c)
	// The cache would keep the old verdict for an hour, so only the Redis
	// message can deliver the change in time.
	replica, _ := f.authenticator(Config{RevocationPoll: time.Hour, CacheTTL: time.Hour})
	replica.SetRedis(c)
	u := f.user(t, store.User{Name: "ravi", Active: true})
	_, text := f.key(t, u.ID)
	if _, err := replica.Authenticate(ctx, text); err != nil {
		t.Fatal(err)
	}

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	before := c.PubSubNumSub(ctx, RevokedChannel).Val()[RevokedChannel]
	go replica.Run(runCtx)
	waitFor(t, "replica subscription", func() bool {
		return c.PubSubNumSub(ctx, RevokedChannel).Val()[RevokedChannel] > before
	})

	u.Active = false
	if err := f.st.UpdateUser(ctx, &u); err != nil {
		t.Fatal(err)
	}
	f.a.ForgetUser(u.ID)
	waitFor(t, "user change on the replica", func() bool {
		_, err := replica.Authenticate(ctx, text)
		return errors.Is(err, ErrInactive)
	})
}
