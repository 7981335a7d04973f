// Package ratelimit limits requests per user, per upstream session, in
// flight per key, and failed authentications per client address.
//
// The per-user limit is a sliding-window log over the last minute: each
// admitted request is recorded with its time, and a request is admitted
// while fewer than the limit were admitted in the 60 seconds before it.
// Unlike a fixed window, it never admits twice the limit across a window
// edge, and a rejected caller learns when a slot frees up, rounded up to
// whole seconds. The failed-authentication limit per address uses the
// same log. Upstream sessions use a token bucket, and concurrency caps use
// counted leases.
//
// Memory keeps the state in process, for a single replica. Redis keeps it
// in Redis with atomic Lua scripts, so the limits hold across replicas.
// NewFallback puts the in-process limiter behind Redis for Redis outages.
package ratelimit

import (
	"context"
	"time"
)

// Window is the span of the per-user and failed-authentication limits.
const Window = time.Minute

// DefaultAuthFailuresPerMinute is the number of failed authentications an
// address may have in one Window before it is blocked, for limiters built
// without an explicit number.
const DefaultAuthFailuresPerMinute = 20

// Decision is the result of a per-user check, with the figures that the
// x-ratelimit-* response headers carry.
type Decision struct {
	Allowed bool
	// Limit is the requests allowed per Window; 0 means no limit.
	Limit int
	// Remaining is the requests still allowed in the current window,
	// after this one when it was allowed.
	Remaining int
	// Reset is the time until every recorded request has left the window,
	// so the full limit is available again.
	Reset time.Duration
	// RetryAfter is the wait before a rejected request would be admitted:
	// whole seconds between 1s and Window. It is 0 when Allowed.
	RetryAfter time.Duration
}

// Limiter is the set of limits the server applies. Implementations are
// safe for concurrent use.
type Limiter interface {
	// AllowUser records a request of userID and decides on it against a
	// sliding window of perMinute requests. perMinute <= 0 means no limit.
	AllowUser(ctx context.Context, userID string, perMinute int) (Decision, error)
	// AllowSession takes a token from the bucket of sessionID, which
	// refills at perSecond and holds at most max(1, perSecond) tokens.
	// perSecond <= 0 means no limit.
	AllowSession(ctx context.Context, sessionID string, perSecond float64) (bool, error)
	// Acquire takes one of max in-flight slots of id within scope (e.g.
	// "key"). When ok, release must be called once the request ends;
	// calling it more than once is harmless. max <= 0 means no cap.
	Acquire(ctx context.Context, scope, id string, max int) (release func(), ok bool, err error)
	// AuthFailure records a failed authentication from ip. blocked is true
	// when ip is over its per-minute limit, with the wait until it is not.
	AuthFailure(ctx context.Context, ip string) (blocked bool, retryAfter time.Duration, err error)
	// AuthBlocked reports, without recording anything, whether ip is over
	// its failed-authentication limit, with the wait until it is not.
	AuthBlocked(ctx context.Context, ip string) (bool, time.Duration, error)
}

// roundRetry rounds a wait up to whole seconds, between 1s and Window.
func roundRetry(wait time.Duration) time.Duration {
	d := (wait + time.Second - 1) / time.Second * time.Second
	return min(max(d, time.Second), Window)
}

// bucketCapacity is the number of tokens a session bucket holds: one
// second's worth, and at least one.
func bucketCapacity(perSecond float64) float64 {
	return max(1, perSecond)
}

func noop() {}
