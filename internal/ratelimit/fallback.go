package ratelimit

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Fallback is a Limiter that uses a primary limiter, usually Redis, and
// switches to a fallback limiter, usually Memory, when the primary fails. While
// the primary is down each replica limits on its own, so the totals across
// replicas may exceed the limits. It is safe for concurrent use.
type Fallback struct {
	primary  Limiter
	fallback Limiter
	failOpen bool
	log      *slog.Logger

	mu     sync.Mutex // guards warned
	warned time.Time  // last warning about the primary
}

var _ Limiter = (*Fallback)(nil)

// NewFallback returns a Limiter that uses fallback when primary returns an
// error, and logs that at most once per minute. fallback may be nil. When
// fallback is nil or fails too, failOpen admits the request; otherwise the
// error is returned and the caller rejects the request.
func NewFallback(primary, fallback Limiter, failOpen bool, log *slog.Logger) Limiter {
	return &Fallback{primary: primary, fallback: fallback, failOpen: failOpen, log: log}
}

// AllowUser implements Limiter.
func (f *Fallback) AllowUser(ctx context.Context, userID string, perMinute int) (Decision, error) {
	d, err := f.primary.AllowUser(ctx, userID, perMinute)
	if err == nil {
		return d, nil
	}
	f.warn(err)
	if f.fallback != nil {
		if d, ferr := f.fallback.AllowUser(ctx, userID, perMinute); ferr == nil {
			return d, nil
		}
	}
	if f.failOpen {
		return Decision{Allowed: true, Limit: perMinute, Remaining: perMinute}, nil
	}
	return Decision{}, err
}

// AllowSession implements Limiter.
func (f *Fallback) AllowSession(ctx context.Context, sessionID string, perSecond float64) (bool, error) {
	ok, err := f.primary.AllowSession(ctx, sessionID, perSecond)
	if err == nil {
		return ok, nil
	}
	f.warn(err)
	if f.fallback != nil {
		if ok, ferr := f.fallback.AllowSession(ctx, sessionID, perSecond); ferr == nil {
			return ok, nil
		}
	}
	if f.failOpen {
		return true, nil
	}
	return false, err
}

// Acquire implements Limiter. The release function returned goes to the
// limiter that granted the slot.
func (f *Fallback) Acquire(ctx context.Context, scope, id string, max int) (func(), bool, error) {
	release, ok, err := f.primary.Acquire(ctx, scope, id, max)
	if err == nil {
		return release, ok, nil
	}
	f.warn(err)
	if f.fallback != nil {
		if release, ok, ferr := f.fallback.Acquire(ctx, scope, id, max); ferr == nil {
			return release, ok, nil
		}
	}
	if f.failOpen {
		return noop, true, nil
	}
	return nil, false, err
}

// AuthFailure implements Limiter.
func (f *Fallback) AuthFailure(ctx context.Context, ip string) (bool, time.Duration, error) {
	blocked, wait, err := f.primary.AuthFailure(ctx, ip)
	if err == nil {
		return blocked, wait, nil
	}
	f.warn(err)
	if f.fallback != nil {
		if blocked, wait, ferr := f.fallback.AuthFailure(ctx, ip); ferr == nil {
			return blocked, wait, nil
		}
	}
	if f.failOpen {
		return false, 0, nil
	}
	return false, 0, err
}

// AuthBlocked implements Limiter.
func (f *Fallback) AuthBlocked(ctx context.Context, ip string) (bool, time.Duration, error) {
	blocked, wait, err := f.primary.AuthBlocked(ctx, ip)
	if err == nil {
		return blocked, wait, nil
	}
	f.warn(err)
	if f.fallback != nil {
		if blocked, wait, ferr := f.fallback.AuthBlocked(ctx, ip); ferr == nil {
			return blocked, wait, nil
		}
	}
	if f.failOpen {
		return false, 0, nil
	}
	return false, 0, err
}

// warn logs a primary failure at most once per minute.
func (f *Fallback) warn(err error) {
	now := time.Now()
	f.mu.Lock()
	if !f.warned.IsZero() && now.Sub(f.warned) < time.Minute {
		f.mu.Unlock()
		return
	}
	f.warned = now
	f.mu.Unlock()
	f.log.Warn("rate limiter unavailable, using fallback", "error", err)
}
