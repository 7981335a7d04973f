package ratelimit

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultProbeInterval is how long Fallback leaves a failed primary alone
// before it tries it again.
const DefaultProbeInterval = time.Second

// Fallback is a Limiter that uses a primary limiter, usually Redis, and
// switches to a fallback limiter, usually Memory, when the primary fails.
// While the primary is down each replica limits on its own, so the totals
// across replicas may exceed the limits. After a failure the primary is
// left alone for a probe interval, so an outage does not add a connection
// attempt to every request. It is safe for concurrent use.
type Fallback struct {
	primary  Limiter
	fallback Limiter
	failOpen bool
	log      *slog.Logger
	now      func() time.Time
	probe    time.Duration
	active   prometheus.Gauge   // 1 while the primary is down; may be nil
	errors   prometheus.Counter // primary failures; may be nil

	mu        sync.Mutex // guards the fields below
	downUntil time.Time  // the primary is skipped until then
	down      bool       // the last call to the primary failed
	lastErr   error      // the error of that call
	warned    time.Time  // last warning about the primary
}

var _ Limiter = (*Fallback)(nil)

// FallbackOption changes a Fallback built by NewFallback.
type FallbackOption func(*Fallback)

// WithMetrics registers on reg the gauge grokproxy_ratelimit_fallback_active,
// 1 while the primary is unreachable, and the counter
// grokproxy_ratelimit_backend_errors_total of primary failures.
func WithMetrics(reg prometheus.Registerer) FallbackOption {
	return func(f *Fallback) {
		f.active = prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "grokproxy_ratelimit_fallback_active",
			Help: "1 while the shared rate limiter (Redis) is unreachable and this replica limits on its own or refuses requests.",
		})
		f.errors = prometheus.NewCounter(prometheus.CounterOpts{
			Name: "grokproxy_ratelimit_backend_errors_total",
			Help: "Calls to the shared rate limiter (Redis) that failed.",
		})
		reg.MustRegister(f.active, f.errors)
	}
}

// WithProbeInterval sets how long a failed primary is skipped, in place of
// DefaultProbeInterval. Zero or less tries the primary on every call.
func WithProbeInterval(d time.Duration) FallbackOption {
	return func(f *Fallback) { f.probe = d }
}

// WithClock sets the clock that times the probe interval and the
// warnings; the default is time.Now.
func WithClock(now func() time.Time) FallbackOption {
	return func(f *Fallback) { f.now = now }
}

// NewFallback returns a Limiter that uses fallback while primary fails,
// and logs that at most once per minute. fallback may be nil. When
// fallback is nil or fails too, failOpen admits the request; otherwise the
// primary's error is returned and the caller rejects the request.
func NewFallback(primary, fallback Limiter, failOpen bool, log *slog.Logger, opts ...FallbackOption) *Fallback {
	f := &Fallback{primary: primary, fallback: fallback, failOpen: failOpen, log: log,
		now: time.Now, probe: DefaultProbeInterval}
	for _, o := range opts {
		o(f)
	}
	return f
}

// Degraded reports whether the last call to the primary failed.
func (f *Fallback) Degraded() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.down
}

// AllowUser implements Limiter.
func (f *Fallback) AllowUser(ctx context.Context, userID string, perMinute int) (Decision, error) {
	d, err := try(f, ctx, func(l Limiter) (Decision, error) { return l.AllowUser(ctx, userID, perMinute) })
	if err != nil && f.failOpen {
		return Decision{Allowed: true, Limit: perMinute, Remaining: perMinute}, nil
	}
	return d, err
}

// AllowSession implements Limiter.
func (f *Fallback) AllowSession(ctx context.Context, sessionID string, perSecond float64) (bool, error) {
	ok, err := try(f, ctx, func(l Limiter) (bool, error) { return l.AllowSession(ctx, sessionID, perSecond) })
	if err != nil && f.failOpen {
		return true, nil
	}
	return ok, err
}

// grant is the result of Acquire.
type grant struct {
	release func()
	ok      bool
}

// Acquire implements Limiter. The release function returned goes to the
// limiter that granted the slot.
func (f *Fallback) Acquire(ctx context.Context, scope, id string, max int) (func(), bool, error) {
	g, err := try(f, ctx, func(l Limiter) (grant, error) {
		release, ok, err := l.Acquire(ctx, scope, id, max)
		return grant{release, ok}, err
	})
	if err != nil && f.failOpen {
		return noop, true, nil
	}
	return g.release, g.ok, err
}

// verdict is the result of AuthFailure and AuthBlocked.
type verdict struct {
	blocked bool
	wait    time.Duration
}

// AuthFailure implements Limiter.
func (f *Fallback) AuthFailure(ctx context.Context, ip string) (bool, time.Duration, error) {
	v, err := try(f, ctx, func(l Limiter) (verdict, error) {
		blocked, wait, err := l.AuthFailure(ctx, ip)
		return verdict{blocked, wait}, err
	})
	if err != nil && f.failOpen {
		return false, 0, nil
	}
	return v.blocked, v.wait, err
}

// AuthBlocked implements Limiter.
func (f *Fallback) AuthBlocked(ctx context.Context, ip string) (bool, time.Duration, error) {
	v, err := try(f, ctx, func(l Limiter) (verdict, error) {
		blocked, wait, err := l.AuthBlocked(ctx, ip)
		return verdict{blocked, wait}, err
	})
	if err != nil && f.failOpen {
		return false, 0, nil
	}
	return v.blocked, v.wait, err
}

// try calls the primary unless it is resting after a failure, then the
// fallback. It returns the error of the primary when neither limiter
// returned a result.
func try[T any](f *Fallback, ctx context.Context, call func(Limiter) (T, error)) (T, error) {
	var zero T
	err := f.resting()
	if err == nil {
		v, perr := call(f.primary)
		if perr == nil {
			f.recovered()
			return v, nil
		}
		if ctx.Err() != nil {
			// The caller canceled, which is no sign that the primary failed.
			return zero, perr
		}
		f.failed(perr)
		err = perr
	}
	if f.fallback != nil {
		if v, ferr := call(f.fallback); ferr == nil {
			return v, nil
		}
	}
	return zero, err
}

// errResting is returned while a failed primary is skipped.
type errResting struct{ cause error }

func (e errResting) Error() string { return "shared rate limiter unavailable: " + e.cause.Error() }

func (e errResting) Unwrap() error { return e.cause }

// resting returns an error while the primary is skipped after a failure.
func (f *Fallback) resting() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down && f.now().Before(f.downUntil) {
		return errResting{cause: f.lastErr}
	}
	return nil
}

// failed records a primary failure, logs it at most once per minute and
// rests the primary for the probe interval.
func (f *Fallback) failed(err error) {
	now := f.now()
	f.mu.Lock()
	f.down = true
	f.lastErr = err
	f.downUntil = now.Add(f.probe)
	warn := f.warned.IsZero() || now.Sub(f.warned) >= time.Minute
	if warn {
		f.warned = now
	}
	f.mu.Unlock()

	if f.errors != nil {
		f.errors.Inc()
	}
	if f.active != nil {
		f.active.Set(1)
	}
	if !warn {
		return
	}
	if f.fallback != nil {
		f.log.Warn("rate limiter unavailable, using fallback", "error", err)
		return
	}
	if f.failOpen {
		f.log.Warn("rate limiter unavailable, admitting requests without limits", "error", err)
		return
	}
	f.log.Warn("rate limiter unavailable, rejecting requests", "error", err)
}

// recovered records a primary success after a failure.
func (f *Fallback) recovered() {
	f.mu.Lock()
	was := f.down
	f.down = false
	f.mu.Unlock()
	if !was {
		return
	}
	if f.active != nil {
		f.active.Set(0)
	}
	f.log.Info("rate limiter reachable again")
}
