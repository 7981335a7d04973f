package ratelimit

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// brokenLimiter fails every call, as Redis does while it is down.
type brokenLimiter struct{}

var errDown = errors.New("connection refused")

func (brokenLimiter) AllowUser(context.Context, string, int) (Decision, error) {
	return Decision{}, errDown
}

func (brokenLimiter) AllowSession(context.Context, string, float64) (bool, error) {
	return false, errDown
}

func (brokenLimiter) Acquire(context.Context, string, string, int) (func(), bool, error) {
	return nil, false, errDown
}

func (brokenLimiter) AuthFailure(context.Context, string) (bool, time.Duration, error) {
	return false, 0, errDown
}

func (brokenLimiter) AuthBlocked(context.Context, string) (bool, time.Duration, error) {
	return false, 0, errDown
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestFallbackUsesMemoryWhenPrimaryFails(t *testing.T) {
	ctx := context.Background()
	var logs syncBuffer
	l := NewFallback(brokenLimiter{}, NewMemory(newClock().now, 1), false, slog.New(slog.NewTextHandler(&logs, nil)))

	for i := range 2 {
		d, err := l.AllowUser(ctx, "u", 2)
		if err != nil {
			t.Fatalf("AllowUser: %v; want the fallback's answer", err)
		}
		if !d.Allowed {
			t.Fatalf("request %d refused under a limit of 2", i+1)
		}
	}
	if d, _ := l.AllowUser(ctx, "u", 2); d.Allowed {
		t.Fatal("fallback did not enforce the limit")
	}
	if _, ok, err := l.Acquire(ctx, "key", "k", 1); err != nil || !ok {
		t.Fatalf("Acquire = %v, %v; want ok from the fallback", ok, err)
	}
	if _, ok, _ := l.Acquire(ctx, "key", "k", 1); ok {
		t.Fatal("fallback did not enforce the concurrency cap")
	}
	l.AuthFailure(ctx, "192.0.2.1")
	if blocked, _, _ := l.AuthFailure(ctx, "192.0.2.1"); !blocked {
		t.Fatal("fallback did not block the address")
	}

	if n := strings.Count(logs.String(), "rate limiter unavailable"); n != 1 {
		t.Errorf("logged the outage %d times; want once per minute", n)
	}
}

func TestFallbackFailClosed(t *testing.T) {
	l := NewFallback(brokenLimiter{}, nil, false, discardLog())
	if _, err := l.AllowUser(context.Background(), "u", 5); !errors.Is(err, errDown) {
		t.Errorf("AllowUser error = %v; want the primary's error", err)
	}
	if _, ok, err := l.Acquire(context.Background(), "key", "k", 1); ok || err == nil {
		t.Errorf("Acquire = %v, %v; want refused with an error", ok, err)
	}
}

func TestFallbackFailOpen(t *testing.T) {
	l := NewFallback(brokenLimiter{}, nil, true, discardLog())
	d, err := l.AllowUser(context.Background(), "u", 5)
	if err != nil || !d.Allowed {
		t.Errorf("AllowUser = %+v, %v; want allowed", d, err)
	}
	release, ok, err := l.Acquire(context.Background(), "key", "k", 1)
	if err != nil || !ok || release == nil {
		t.Errorf("Acquire = %v, %v; want allowed with a release func", ok, err)
	}
}

func TestFallbackPrefersPrimary(t *testing.T) {
	ctx := context.Background()
	primary := NewMemory(newClock().now, 10)
	secondary := NewMemory(newClock().now, 10)
	l := NewFallback(primary, secondary, false, discardLog())
	l.AllowUser(ctx, "u", 1)
	if d, _ := primary.AllowUser(ctx, "u", 1); d.Allowed {
		t.Error("request was not recorded by the primary")
	}
	if d, _ := secondary.AllowUser(ctx, "u", 1); !d.Allowed {
		t.Error("request was recorded by the fallback while the primary worked")
	}
}
