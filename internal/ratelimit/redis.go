package ratelimit

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// DefaultRedisPrefix starts every key that Redis limiters write.
const DefaultRedisPrefix = "grokproxy:rl:"

// DefaultLeaseTTL is how long a concurrency lease outlives its last
// renewal, so the slots of a replica that dies come free after at most
// this long. A live lease is renewed every third of it.
const DefaultLeaseTTL = 30 * time.Second

// Each script reads the clock with Redis TIME, so replicas with skewed
// clocks still share one window. Times are in microseconds, which a Lua
// number holds exactly.

// slidingScript records a request in the log KEYS[1] when fewer than
// ARGV[1] were recorded in the last ARGV[2] microseconds. ARGV[3] names
// the entry. It returns {allowed, remaining, reset µs, retry µs}.
var slidingScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local n = redis.call('ZCARD', KEYS[1])
if n < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
  return {1, limit - n - 1, window, 0}
end
local wait = redis.call('ZRANGE', KEYS[1], n - limit, n - limit, 'WITHSCORES')
local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
return {0, 0, tonumber(newest[2]) + window - now, tonumber(wait[2]) + window - now}
`)

// authScript optionally records a failure (ARGV[4] = "1") named ARGV[3]
// in the log KEYS[1], keeping at most ARGV[1]+1 entries of the last ARGV[2]
// microseconds. It returns {blocked, retry µs}.
var authScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if ARGV[4] == '1' then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(limit + 2))
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
end
local n = redis.call('ZCARD', KEYS[1])
if n <= limit then
  return {0, 0}
end
local wait = redis.call('ZRANGE', KEYS[1], n - limit - 1, n - limit - 1, 'WITHSCORES')
return {1, tonumber(wait[2]) + window - now}
`)

// bucketScript takes a token from the bucket KEYS[1], which refills at
// ARGV[1] tokens per second and holds at most ARGV[2]. It returns 1 when
// a token was taken.
var bucketScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local rate = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local v = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(v[1])
local ts = tonumber(v[2])
if tokens == nil or ts == nil then
  tokens = cap
  ts = now
end
if now > ts then
  tokens = math.min(cap, tokens + (now - ts) / 1000000 * rate)
  ts = now
end
local ok = 0
if tokens >= 1 then
  tokens = tokens - 1
  ok = 1
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', ts)
redis.call('PEXPIRE', KEYS[1], math.ceil(cap / rate * 1000) + 1000)
return ok
`)

// acquireScript adds the lease ARGV[3], valid for ARGV[2] microseconds, to
// the set KEYS[1] when fewer than ARGV[1] live leases are in it. Scores
// are lease deadlines. It returns 1 when the lease was added.
var acquireScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(ttl / 1000))
return 1
`)

// renewScript pushes back the deadline of the lease ARGV[2] in KEYS[1] by
// ARGV[1] microseconds, if the lease is still there.
var renewScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local ttl = tonumber(ARGV[1])
if redis.call('ZADD', KEYS[1], 'XX', 'CH', now + ttl, ARGV[2]) == 1 then
  redis.call('PEXPIRE', KEYS[1], math.ceil(ttl / 1000))
  return 1
end
return 0
`)

// Redis is a Limiter that keeps its state in Redis, so every replica that
// shares the Redis shares the limits. It is safe for concurrent use.
type Redis struct {
	c         *redis.Client
	log       *slog.Logger
	prefix    string
	authLimit int
	leaseTTL  time.Duration
}

var _ Limiter = (*Redis)(nil)

// RedisOption changes a Redis limiter built by NewRedis.
type RedisOption func(*Redis)

// WithPrefix starts every key with prefix in place of DefaultRedisPrefix.
func WithPrefix(prefix string) RedisOption {
	return func(r *Redis) { r.prefix = prefix }
}

// WithAuthFailuresPerMinute blocks an address after more than n failed
// authentications in one Window, in place of DefaultAuthFailuresPerMinute.
// Zero or less disables the limit.
func WithAuthFailuresPerMinute(n int) RedisOption {
	return func(r *Redis) { r.authLimit = n }
}

// WithLeaseTTL sets how long a concurrency lease of a replica that stopped
// renewing it holds its slot, in place of DefaultLeaseTTL. Values under
// 300ms are raised to 300ms.
func WithLeaseTTL(ttl time.Duration) RedisOption {
	return func(r *Redis) { r.leaseTTL = max(ttl, 300*time.Millisecond) }
}

// NewRedis returns a Limiter over c.
func NewRedis(c *redis.Client, log *slog.Logger, opts ...RedisOption) *Redis {
	r := &Redis{c: c, log: log, prefix: DefaultRedisPrefix, authLimit: DefaultAuthFailuresPerMinute,
		leaseTTL: DefaultLeaseTTL}
	for _, o := range opts {
		o(r)
	}
	return r
}

// AllowUser implements Limiter.
func (r *Redis) AllowUser(ctx context.Context, userID string, perMinute int) (Decision, error) {
	if perMinute <= 0 {
		return Decision{Allowed: true}, nil
	}
	res, err := slidingScript.Run(ctx, r.c, []string{r.prefix + "user:" + userID},
		perMinute, Window.Microseconds(), uuid.NewString()).Int64Slice()
	if err != nil {
		return Decision{}, fmt.Errorf("check rate limit of user %q: %w", userID, err)
	}
	d := Decision{
		Allowed:   res[0] == 1,
		Limit:     perMinute,
		Remaining: int(res[1]),
		Reset:     time.Duration(res[2]) * time.Microsecond,
	}
	if !d.Allowed {
		d.RetryAfter = roundRetry(time.Duration(res[3]) * time.Microsecond)
	}
	return d, nil
}

// AllowSession implements Limiter.
func (r *Redis) AllowSession(ctx context.Context, sessionID string, perSecond float64) (bool, error) {
	if perSecond <= 0 {
		return true, nil
	}
	ok, err := bucketScript.Run(ctx, r.c, []string{r.prefix + "session:" + sessionID},
		perSecond, bucketCapacity(perSecond)).Int()
	if err != nil {
		return false, fmt.Errorf("check rate limit of session %q: %w", sessionID, err)
	}
	return ok == 1, nil
}

// Acquire implements Limiter. A lease is renewed in the background until
// release is called, so a request may run longer than the lease TTL.
func (r *Redis) Acquire(ctx context.Context, scope, id string, max int) (func(), bool, error) {
	if max <= 0 {
		return noop, true, nil
	}
	key := r.prefix + "lease:" + scope + ":" + id
	lease := uuid.NewString()
	ok, err := acquireScript.Run(ctx, r.c, []string{key}, max, r.leaseTTL.Microseconds(), lease).Int()
	if err != nil {
		return nil, false, fmt.Errorf("acquire %s slot of %q: %w", scope, id, err)
	}
	if ok != 1 {
		return nil, false, nil
	}

	stop := make(chan struct{})
	done := make(chan struct{})
	go r.renew(key, lease, stop, done)
	var once sync.Once
	release := func() {
		once.Do(func() {
			close(stop)
			<-done
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := r.c.ZRem(ctx, key, lease).Err(); err != nil {
				// The lease runs out by itself within the lease TTL.
				r.log.Warn("release concurrency lease", "scope", scope, "error", err)
			}
		})
	}
	return release, true, nil
}

// renew keeps a lease alive until stop is closed.
func (r *Redis) renew(key, lease string, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(r.leaseTTL / 3)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			ctx, cancel := context.WithTimeout(context.Background(), r.leaseTTL/3)
			err := renewScript.Run(ctx, r.c, []string{key}, r.leaseTTL.Microseconds(), lease).Err()
			cancel()
			if err != nil {
				r.log.Warn("renew concurrency lease", "error", err)
			}
		}
	}
}

// AuthFailure implements Limiter.
func (r *Redis) AuthFailure(ctx context.Context, ip string) (bool, time.Duration, error) {
	return r.authFailures(ctx, ip, true)
}

// AuthBlocked implements Limiter.
func (r *Redis) AuthBlocked(ctx context.Context, ip string) (bool, time.Duration, error) {
	return r.authFailures(ctx, ip, false)
}

func (r *Redis) authFailures(ctx context.Context, ip string, record bool) (bool, time.Duration, error) {
	if r.authLimit <= 0 {
		return false, 0, nil
	}
	flag := "0"
	if record {
		flag = "1"
	}
	res, err := authScript.Run(ctx, r.c, []string{r.prefix + "auth:" + ip},
		r.authLimit, Window.Microseconds(), uuid.NewString(), flag).Int64Slice()
	if err != nil {
		return false, 0, fmt.Errorf("check failed authentications of %q: %w", ip, err)
	}
	if res[0] != 1 {
		return false, 0, nil
	}
	return true, roundRetry(time.Duration(res[1]) * time.Microsecond), nil
}
