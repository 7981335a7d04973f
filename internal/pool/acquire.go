package pool

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/grokproxy/grokproxy/internal/store"
	"github.com/grokproxy/grokproxy/internal/upstream"
)

// sampleTries is how many random sessions Acquire looks at before it falls
// back to scanning the whole provider. Sampling keeps selection cheap when
// most sessions are usable. The scan finds the rare usable session and
// the rest time when none is.
const sampleTries = 8

// AcquireRequest describes the session a request needs.
type AcquireRequest struct {
	Provider string
	// Model is the upstream model or mode id; a session whose quota for it
	// is known to be spent is skipped.
	Model string
	// Exclude lists session ids not to use, such as those that already
	// failed this request.
	Exclude []string
	// Prefer is a session id to use when it is usable, such as the owner
	// of a stored conversation.
	Prefer string
}

// Lease is a session handed out for one upstream call. Pass it to Release
// when the call ends; Release ignores a second call with the same lease.
type Lease struct {
	SessionID  string
	Provider   string
	Credential upstream.Credential

	model       string
	egress      string // name of the outbound route
	trial       bool   // the half-open provider circuit's trial call
	egressTrial bool   // the half-open route circuit's trial call
	released    bool   // guarded by Pool.mu
}

// NoSessionError is returned by Acquire when no session of the provider can
// take the request.
type NoSessionError struct {
	Provider string
	// Resting is set when some sessions are only waiting for a cool-down,
	// a token or a quota reset. RetryAfter is then the time until the
	// first of them is usable again.
	Resting    bool
	RetryAfter time.Duration
}

func (e *NoSessionError) Error() string {
	if e.Resting {
		return fmt.Sprintf("every session of provider %q is resting; retry in %s", e.Provider, e.RetryAfter)
	}
	return fmt.Sprintf("no usable session for provider %q", e.Provider)
}

// availability is whether a session can take a request now.
type availability int

const (
	usable    availability = iota
	outOfPool              // wrong status, excluded, unreadable or under a login check
	busy                   // at its concurrency cap
	waiting                // resting, out of tokens or out of quota until a known time
)

// Acquire leases a session for one upstream call of req.Provider. It fails
// with an error wrapping ErrCircuitOpen while the provider's circuit is
// open, and with a *NoSessionError when no session is usable. Sessions
// whose outbound route has an open circuit are not usable.
func (p *Pool) Acquire(ctx context.Context, req AcquireRequest) (*Lease, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if p.cfg.Limiter != nil && p.cfg.RatePerSecond > 0 {
		return p.acquireShared(ctx, req)
	}
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()

	trial, err := p.admitLocked(req.Provider, now)
	if err != nil {
		return nil, err
	}
	e, err := p.chooseLocked(req, now)
	if err != nil {
		if trial {
			p.cancelTrialLocked(req.Provider)
		}
		return nil, err
	}
	return p.leaseLocked(e, req.Model, trial, now), nil
}

// limiterTries is how many sessions acquireShared asks the shared limiter
// about before it reports every session as resting.
const limiterTries = 4

// acquireShared is Acquire with the rate buckets in Config.Limiter. The
// limiter is asked outside the pool's lock, because it may be a network
// call. A session it refuses is skipped for the rest of this call.
func (p *Pool) acquireShared(ctx context.Context, req AcquireRequest) (*Lease, error) {
	p.mu.Lock()
	trial, err := p.admitLocked(req.Provider, p.now())
	p.mu.Unlock()
	if err != nil {
		return nil, err
	}
	l, err := p.chooseShared(ctx, req, trial)
	if err != nil && trial {
		p.mu.Lock()
		p.cancelTrialLocked(req.Provider)
		p.mu.Unlock()
	}
	return l, err
}

func (p *Pool) chooseShared(ctx context.Context, req AcquireRequest, trial bool) (*Lease, error) {
	req.Exclude = slices.Clone(req.Exclude)
	refused := 0
	for range limiterTries {
		p.mu.Lock()
		e, err := p.chooseLocked(req, p.now())
		var id string
		if e != nil {
			id = e.s.ID
		}
		p.mu.Unlock()
		if err != nil {
			if refused > 0 {
				break
			}
			return nil, err
		}

		ok, err := p.cfg.Limiter.AllowSession(ctx, id, p.cfg.RatePerSecond)
		if err != nil {
			// A limiter that cannot decide does not stop traffic. The
			// pool's own caps (concurrency, rests) still apply.
			p.log.Debug("session rate limiter unavailable", "session_id", id, "error", err)
			ok = true
		}
		if !ok {
			req.Exclude = append(req.Exclude, id)
			refused++
			continue
		}

		now := p.now()
		p.mu.Lock()
		if cur, found := p.entries[id]; found && cur == e && p.availabilityLocked(e, req, now) == usable {
			l := p.leaseLocked(e, req.Model, trial, now)
			p.mu.Unlock()
			return l, nil
		}
		p.mu.Unlock()
		req.Exclude = append(req.Exclude, id) // changed while the limiter was asked
	}
	next := time.Duration(float64(time.Second) / p.cfg.RatePerSecond)
	return nil, &NoSessionError{Provider: req.Provider, Resting: true, RetryAfter: next}
}

// localBucket reports whether the pool keeps the session rate buckets in
// this process.
func (p *Pool) localBucket() bool {
	return p.cfg.RatePerSecond > 0 && p.cfg.Limiter == nil
}

// chooseLocked picks a usable session: the preferred one when it is usable,
// else the better of two random usable ones.
func (p *Pool) chooseLocked(req AcquireRequest, now time.Time) (*entry, error) {
	if e, ok := p.entries[req.Prefer]; ok && e.s.Provider == req.Provider {
		if p.availabilityLocked(e, req, now) == usable {
			return e, nil
		}
	}

	list := p.byProvider[req.Provider]
	var picks []*entry
	for range min(sampleTries, 2*len(list)) {
		e := list[rand.IntN(len(list))]
		if (len(picks) == 1 && picks[0] == e) || p.availabilityLocked(e, req, now) != usable {
			continue
		}
		if picks = append(picks, e); len(picks) == 2 {
			return p.betterLocked(picks[0], picks[1], req.Model, now), nil
		}
	}

	candidates, err := p.scanLocked(list, req, now)
	if err != nil {
		return nil, err
	}
	if len(candidates) == 1 {
		return candidates[0], nil
	}
	i := rand.IntN(len(candidates))
	j := rand.IntN(len(candidates) - 1)
	if j >= i {
		j++
	}
	return p.betterLocked(candidates[i], candidates[j], req.Model, now), nil
}

// scanLocked returns every usable session in list, or a *NoSessionError
// with the time until the first waiting session is usable again.
func (p *Pool) scanLocked(list []*entry, req AcquireRequest, now time.Time) ([]*entry, error) {
	var candidates []*entry
	var readyAt time.Time
	for _, e := range list {
		switch p.availabilityLocked(e, req, now) {
		case usable:
			candidates = append(candidates, e)
		case waiting:
			if at := p.readyAtLocked(e, req.Model, now); readyAt.IsZero() || at.Before(readyAt) {
				readyAt = at
			}
		}
	}
	if len(candidates) > 0 {
		return candidates, nil
	}
	nsErr := &NoSessionError{Provider: req.Provider}
	if !readyAt.IsZero() {
		nsErr.Resting = true
		nsErr.RetryAfter = max(0, readyAt.Sub(now))
	}
	return nil, nsErr
}

// betterLocked returns the session with the larger share of work to give:
// weight times remaining quota share, divided by requests in flight.
func (p *Pool) betterLocked(a, b *entry, model string, now time.Time) *entry {
	score := func(e *entry) float64 {
		return e.weight() * e.quotaShare(model, now) / float64(e.inFlight+1)
	}
	if score(b) > score(a) {
		return b
	}
	return a
}

// availabilityLocked reports whether e can take req now, and if not, why.
func (p *Pool) availabilityLocked(e *entry, req AcquireRequest, now time.Time) availability {
	switch {
	case e.s.Status != store.StatusHealthy, e.unreadable, e.checkingLogin:
		return outOfPool
	case !e.s.ExpiresAt.IsZero() && !now.Before(e.s.ExpiresAt):
		return outOfPool
	case len(req.Exclude) > 0 && slices.Contains(req.Exclude, e.s.ID):
		return outOfPool
	case p.egressBlockedLocked(e, now):
		return outOfPool
	case e.resting(now):
		return waiting
	}
	if e.quotaSpent(req.Model, now) {
		return waiting
	}
	if p.localBucket() {
		e.refill(now, p.cfg.RatePerSecond, p.burst())
		if e.tokens < 1 {
			return waiting
		}
	}
	if e.s.MaxConcurrency > 0 && e.inFlight >= e.s.MaxConcurrency {
		return busy
	}
	return usable
}

// readyAtLocked returns when a waiting session is usable again: the end of
// its rest, its quota reset or its next token, whichever is latest.
func (p *Pool) readyAtLocked(e *entry, model string, now time.Time) time.Time {
	at := now
	if e.resting(now) {
		at = e.s.CooldownUntil
	}
	if q := e.s.Metadata.Quota[model]; e.quotaSpent(model, now) && q.ResetAt.After(at) {
		at = q.ResetAt
	}
	if p.localBucket() && e.tokens < 1 {
		next := now.Add(time.Duration((1 - e.tokens) / p.cfg.RatePerSecond * float64(time.Second)))
		if next.After(at) {
			at = next
		}
	}
	return at
}

// leaseLocked hands e out: it takes a token, counts the request and rests
// the session when it reaches its rotation threshold.
func (p *Pool) leaseLocked(e *entry, model string, trial bool, now time.Time) *Lease {
	e.inFlight++
	if p.localBucket() {
		e.refill(now, p.cfg.RatePerSecond, p.burst())
		e.tokens--
	}
	e.s.UsageCount++
	e.s.LastUsedAt = now
	p.markDirtyLocked(e, false)

	if p.cfg.RotationThreshold > 0 {
		end := e.rotationStart.Add(p.cfg.RotationWindow)
		if !now.Before(end) {
			e.rotationStart, e.rotationCount = now, 0
			end = now.Add(p.cfg.RotationWindow)
		}
		e.rotationCount++
		if e.rotationCount >= p.cfg.RotationThreshold {
			p.restLocked(e, end, ReasonRotationThreshold, now)
		}
	}

	return &Lease{
		SessionID:   e.s.ID,
		Provider:    e.s.Provider,
		Credential:  credentialOf(e),
		model:       model,
		egress:      e.egress,
		trial:       trial,
		egressTrial: p.claimEgressTrialLocked(e, now),
	}
}
