package auth

import (
	"context"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// flushInterval is how often Run saves last-used times.
	flushInterval = 5 * time.Second
	// revocationOverlap widens each revocation poll back in time, so a
	// revocation committed late, or stamped by a replica whose clock runs
	// behind, is still seen.
	revocationOverlap = 10 * time.Second
	// warnInterval spaces repeated warnings about the store or Redis.
	warnInterval = time.Minute
)

// SetRedis makes RevokeKey and RotateKey publish on RevokedChannel and
// makes Run subscribe to it. Call it before Run. The store poll stays on
// as the fallback.
func (a *Authenticator) SetRedis(c *redis.Client) {
	a.redis = c
}

// Run receives revocations and saves last-used times until ctx is done,
// then saves the last-used times once more. Call it once.
func (a *Authenticator) Run(ctx context.Context) {
	if a.redis != nil {
		go a.subscribe(ctx)
	}
	poll := time.NewTicker(a.cfg.RevocationPoll)
	defer poll.Stop()
	flush := time.NewTicker(flushInterval)
	defer flush.Stop()

	var warned time.Time
	since := a.now().Add(-revocationOverlap)
	for {
		select {
		case <-ctx.Done():
			flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			a.flushLastUsed(flushCtx, &warned)
			cancel()
			return
		case <-poll.C:
			since = a.pollRevocations(ctx, since, &warned)
		case <-flush.C:
			a.flushLastUsed(ctx, &warned)
			a.cache.sweep(a.now())
		}
	}
}

// pollRevocations drops from the cache the keys revoked or expired since
// the last poll and returns where the next poll starts. A key that will
// expire later has its cached expiry updated instead, so a rotation grace
// period set on another replica does not cost a bcrypt check per poll.
func (a *Authenticator) pollRevocations(ctx context.Context, since time.Time, warned *time.Time) time.Time {
	start := a.now()
	keys, err := a.st.APIKeysRevokedSince(ctx, since)
	if err != nil {
		if ctx.Err() == nil {
			a.warn(warned, "poll api key revocations", err)
		}
		return since
	}
	for _, k := range keys {
		end := keyEnd(k)
		if !end.After(start) {
			a.Forget(k.KeyID)
			continue
		}
		a.cache.setKeyExpiry(k.KeyID, end)
	}
	return start.Add(-revocationOverlap)
}

// flushLastUsed saves the last-used times gathered since the last flush.
// On failure they are merged back, keeping the newer time of each key.
func (a *Authenticator) flushLastUsed(ctx context.Context, warned *time.Time) {
	a.mu.Lock()
	batch := a.lastUsed
	a.lastUsed = make(map[string]time.Time)
	a.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	for id, at := range batch {
		batch[id] = at.UTC()
	}
	err := a.st.TouchAPIKeys(ctx, batch)
	if err == nil {
		return
	}
	a.warn(warned, "save api key last-used times", err)
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, at := range a.lastUsed {
		if at.After(batch[id]) {
			batch[id] = at
		}
	}
	a.lastUsed = batch
}

// subscribe drops keys named on RevokedChannel until ctx is done. The
// client reconnects by itself after Redis restarts.
func (a *Authenticator) subscribe(ctx context.Context) {
	sub := a.redis.Subscribe(ctx, RevokedChannel)
	defer sub.Close()
	ch := sub.Channel()
	for {
		select {
		case <-ctx.Done():
			return
		case msg, ok := <-ch:
			if !ok {
				return
			}
			if userID, isUser := strings.CutPrefix(msg.Payload, userMessagePrefix); isUser {
				a.cache.forgetUser(userID)
				continue
			}
			a.Forget(msg.Payload)
		}
	}
}

// publish sends a public key id, or userMessagePrefix and a user id, to
// the other replicas, which drop their cached verdicts on it. A failure
// is only logged: the store poll delivers revocations anyway, and a user
// change arrives when the cache entries run out.
func (a *Authenticator) publish(ctx context.Context, payload string) {
	if a.redis == nil {
		return
	}
	if err := a.redis.Publish(ctx, RevokedChannel, payload).Err(); err != nil {
		a.log.Warn("publish api key revocation", "key_id", payload, "error", err)
	}
}

// warn logs err at most once per warnInterval. Only Run's goroutine calls
// it, so last needs no lock.
func (a *Authenticator) warn(last *time.Time, msg string, err error) {
	now := a.now()
	if !last.IsZero() && now.Sub(*last) < warnInterval {
		return
	}
	*last = now
	a.log.Warn(msg, "error", err)
}
