package ratelimit

import (
	"context"
	"hash/maphash"
	"sync"
	"time"
)

const shardCount = 32

// Memory is a Limiter that keeps its state in process. Its state is split
// over shards with a lock each, so unrelated users do not contend, and
// each shard drops entries that have gone idle about once per Window.
// It is safe for concurrent use.
type Memory struct {
	now       func() time.Time
	authLimit int // failed authentications per Window; 0 or less disables
	seed      maphash.Seed
	shards    [shardCount]shard
}

// shard is one part of Memory's state. Keys carry a prefix per kind of
// limit, so kinds never collide.
type shard struct {
	mu        sync.Mutex // guards the fields below
	logs      map[string]*slidingLog
	buckets   map[string]*bucket
	leases    map[string]int // in-flight count per scope and id
	lastSweep time.Time
}

// slidingLog holds the times of recorded events, oldest first, from index
// head on. Entries before head are dropped and reclaimed in batches.
type slidingLog struct {
	at   []time.Time
	head int
}

// bucket is a token bucket.
type bucket struct {
	tokens float64
	last   time.Time
}

var _ Limiter = (*Memory)(nil)

// NewMemory returns an in-process Limiter. An address is blocked after
// more than authFailuresPerMinute failed authentications in one Window;
// 0 or less disables that limit.
func NewMemory(now func() time.Time, authFailuresPerMinute int) *Memory {
	m := &Memory{now: now, authLimit: authFailuresPerMinute, seed: maphash.MakeSeed()}
	for i := range m.shards {
		m.shards[i] = shard{
			logs:    make(map[string]*slidingLog),
			buckets: make(map[string]*bucket),
			leases:  make(map[string]int),
		}
	}
	return m
}

// lock returns the locked shard of key, swept when due.
func (m *Memory) lock(key string, now time.Time) *shard {
	sh := &m.shards[maphash.String(m.seed, key)%shardCount]
	sh.mu.Lock()
	if now.Sub(sh.lastSweep) >= Window {
		sh.sweepLocked(now)
		sh.lastSweep = now
	}
	return sh
}

// AllowUser implements Limiter.
func (m *Memory) AllowUser(_ context.Context, userID string, perMinute int) (Decision, error) {
	if perMinute <= 0 {
		return Decision{Allowed: true}, nil
	}
	now := m.now()
	key := "user\x00" + userID
	sh := m.lock(key, now)
	defer sh.mu.Unlock()

	l := sh.logs[key]
	if l == nil {
		l = &slidingLog{}
		sh.logs[key] = l
	}
	l.trim(now)
	d := Decision{Limit: perMinute}
	if l.len() < perMinute {
		l.add(now)
		d.Allowed = true
		d.Remaining = perMinute - l.len()
	} else {
		d.RetryAfter = roundRetry(l.waitBelow(perMinute, now))
	}
	d.Reset = l.newest().Add(Window).Sub(now)
	return d, nil
}

// AllowSession implements Limiter.
func (m *Memory) AllowSession(_ context.Context, sessionID string, perSecond float64) (bool, error) {
	if perSecond <= 0 {
		return true, nil
	}
	now := m.now()
	key := "session\x00" + sessionID
	sh := m.lock(key, now)
	defer sh.mu.Unlock()

	capacity := bucketCapacity(perSecond)
	b := sh.buckets[key]
	if b == nil {
		b = &bucket{tokens: capacity, last: now}
		sh.buckets[key] = b
	}
	if elapsed := now.Sub(b.last).Seconds(); elapsed > 0 {
		b.tokens = min(capacity, b.tokens+elapsed*perSecond)
		b.last = now
	}
	if b.tokens < 1 {
		return false, nil
	}
	b.tokens--
	return true, nil
}

// Acquire implements Limiter.
func (m *Memory) Acquire(_ context.Context, scope, id string, max int) (func(), bool, error) {
	if max <= 0 {
		return noop, true, nil
	}
	key := scope + "\x00" + id
	sh := m.lock(key, m.now())
	defer sh.mu.Unlock()
	if sh.leases[key] >= max {
		return nil, false, nil
	}
	sh.leases[key]++

	var once sync.Once
	release := func() {
		once.Do(func() {
			sh.mu.Lock()
			defer sh.mu.Unlock()
			if sh.leases[key]--; sh.leases[key] <= 0 {
				delete(sh.leases, key)
			}
		})
	}
	return release, true, nil
}

// AuthFailure implements Limiter.
func (m *Memory) AuthFailure(_ context.Context, ip string) (bool, time.Duration, error) {
	blocked, wait := m.authFailures(ip, true)
	return blocked, wait, nil
}

// AuthBlocked implements Limiter.
func (m *Memory) AuthBlocked(_ context.Context, ip string) (bool, time.Duration, error) {
	blocked, wait := m.authFailures(ip, false)
	return blocked, wait, nil
}

// authFailures optionally records a failure of ip and reports whether ip
// is over the limit. The log keeps at most limit+1 entries, because older
// ones cannot change the result, so a flood of failures uses bounded
// memory.
func (m *Memory) authFailures(ip string, record bool) (bool, time.Duration) {
	if m.authLimit <= 0 {
		return false, 0
	}
	now := m.now()
	key := "auth\x00" + ip
	sh := m.lock(key, now)
	defer sh.mu.Unlock()

	l := sh.logs[key]
	if l == nil {
		if !record {
			return false, 0
		}
		l = &slidingLog{}
		sh.logs[key] = l
	}
	l.trim(now)
	if record {
		l.add(now)
		for l.len() > m.authLimit+1 {
			l.head++
		}
	}
	if l.len() <= m.authLimit {
		return false, 0
	}
	return true, roundRetry(l.waitBelow(m.authLimit+1, now))
}

// sweepLocked drops logs with no entry left in the window and buckets
// that have refilled. A bucket holds at most a second's worth of tokens,
// so after a Window of rest it is full and recreating it is the same.
func (sh *shard) sweepLocked(now time.Time) {
	for k, l := range sh.logs {
		if l.trim(now); l.len() == 0 {
			delete(sh.logs, k)
		}
	}
	for k, b := range sh.buckets {
		if now.Sub(b.last) >= Window {
			delete(sh.buckets, k)
		}
	}
}

func (l *slidingLog) len() int { return len(l.at) - l.head }

func (l *slidingLog) newest() time.Time { return l.at[len(l.at)-1] }

func (l *slidingLog) add(t time.Time) { l.at = append(l.at, t) }

// trim drops the entries that are Window or more older than now.
func (l *slidingLog) trim(now time.Time) {
	cutoff := now.Add(-Window)
	for l.head < len(l.at) && !l.at[l.head].After(cutoff) {
		l.head++
	}
	if l.head > 0 && l.head >= len(l.at)/2 {
		n := copy(l.at, l.at[l.head:])
		clear(l.at[n:])
		l.at = l.at[:n]
		l.head = 0
	}
}

// waitBelow returns the time until fewer than n entries are left in the
// window, given that at least n are there now.
func (l *slidingLog) waitBelow(n int, now time.Time) time.Duration {
	return l.at[l.head+l.len()-n].Add(Window).Sub(now)
}
