package pool

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"
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
	entry       *entry
	circuit     *circuit // the provider's circuit
	route       *circuit // the circuit of the outbound route
	trial       bool     // the half-open provider circuit's trial call
	egressTrial bool     // the half-open route circuit's trial call
	released    atomic.Bool
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
//
// Acquire takes no pool-wide lock: it locks only the few sessions it
// looks at, one at a time.
func (p *Pool) Acquire(ctx context.Context, req AcquireRequest) (*Lease, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c := p.circuit(req.Provider)
	trial, err := p.admit(c, p.now())
	if err != nil {
		return nil, err
	}
	var l *Lease
	if p.cfg.Limiter != nil && p.cfg.RatePerSecond > 0 {
		l, err = p.chooseShared(ctx, req, c, trial)
	} else {
		l, err = p.chooseLocal(req, c, trial)
	}
	if err != nil && trial {
		p.cancelTrial(c)
	}
	return l, err
}

// leaseTries is how many times Acquire chooses again when the session it
// chose was taken by concurrent requests (its last slot or token) before
// it could lease it.
const leaseTries = 8

// chooseLocal is Acquire with the rate buckets in this process.
func (p *Pool) chooseLocal(req AcquireRequest, c *circuit, trial bool) (*Lease, error) {
	for range leaseTries {
		now := p.now()
		e, err := p.choose(req, now)
		if err != nil {
			return nil, err
		}
		if l := p.tryLease(e, req, c, trial, now); l != nil {
			return l, nil
		}
	}
	// Every session chosen was taken by concurrent requests first: the
	// sessions are as good as busy.
	return nil, &NoSessionError{Provider: req.Provider}
}

// limiterTries is the maximum number of sessions chooseShared checks with
// the shared limiter before it reports every session as resting.
const limiterTries = 4

// chooseShared is Acquire with the rate buckets in Config.Limiter. The
// limiter may be a network call, so no lock is held while it is asked. A
// session it refuses is skipped for the rest of this call.
func (p *Pool) chooseShared(ctx context.Context, req AcquireRequest, c *circuit, trial bool) (*Lease, error) {
	req.Exclude = slices.Clone(req.Exclude)
	refused := 0
	for range limiterTries {
		e, err := p.choose(req, p.now())
		if err != nil {
			if refused > 0 {
				break
			}
			return nil, err
		}

		ok, err := p.cfg.Limiter.AllowSession(ctx, e.s.ID, p.cfg.RatePerSecond)
		if err != nil {
			// A limiter that cannot decide does not stop traffic. The
			// pool's own caps (concurrency, rests) still apply.
			p.log.Debug("session rate limiter unavailable", "session_id", e.s.ID, "error", err)
			ok = true
		}
		if !ok {
			req.Exclude = append(req.Exclude, e.s.ID)
			refused++
			continue
		}
		if l := p.tryLease(e, req, c, trial, p.now()); l != nil {
			return l, nil
		}
		req.Exclude = append(req.Exclude, e.s.ID) // changed while the limiter was asked
	}
	next := time.Duration(float64(time.Second) / p.cfg.RatePerSecond)
	return nil, &NoSessionError{Provider: req.Provider, Resting: true, RetryAfter: next}
}

// localBucket reports whether the pool keeps the session rate buckets in
// this process.
func (p *Pool) localBucket() bool {
	return p.cfg.RatePerSecond > 0 && p.cfg.Limiter == nil
}

// candidate is a usable session as it stood when choose looked at it.
type candidate struct {
	e        *entry
	inFlight int
	weight   int
	capacity float64 // see entry.capacity
}

// choose picks a usable session: the preferred one when it is usable, else
// the better of two random usable ones (see better). It returns a
// *NoSessionError when none is usable. The session may be taken by another
// request before the caller leases it; tryLease checks it again.
func (p *Pool) choose(req AcquireRequest, now time.Time) (*entry, error) {
	if e := p.lookup(req.Prefer); e != nil && e.s.Provider == req.Provider {
		if _, av, _ := p.inspect(e, req, now); av == usable {
			return e, nil
		}
	}

	list := p.roster.Load().byProvider[req.Provider]
	var picks [2]candidate
	n := 0
	for range min(sampleTries, 2*len(list)) {
		e := list[rand.IntN(len(list))]
		if n == 1 && picks[0].e == e {
			continue
		}
		c, av, _ := p.inspect(e, req, now)
		if av != usable {
			continue
		}
		picks[n] = c
		if n++; n == 2 {
			return better(picks[0], picks[1]).e, nil
		}
	}

	candidates, err := p.scan(list, req, now)
	if err != nil {
		return nil, err
	}
	if len(candidates) == 1 {
		return candidates[0].e, nil
	}
	i := rand.IntN(len(candidates))
	j := rand.IntN(len(candidates) - 1)
	if j >= i {
		j++
	}
	return better(candidates[i], candidates[j]).e, nil
}

// inspect looks at e under its lock. It returns e as a candidate, whether e
// can take req now and, for a waiting session, when it can again.
func (p *Pool) inspect(e *entry, req AcquireRequest, now time.Time) (candidate, availability, time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	av := p.availabilityLocked(e, req, now)
	var readyAt time.Time
	if av == waiting {
		readyAt = p.readyAtLocked(e, req.Model, now)
	}
	c := candidate{e: e, inFlight: e.inFlight, weight: max(1, e.s.Weight), capacity: e.capacity(req.Model, now)}
	return c, av, readyAt
}

// scan returns every usable session in list, or a *NoSessionError with
// the time until the first waiting session is usable again.
func (p *Pool) scan(list []*entry, req AcquireRequest, now time.Time) ([]candidate, error) {
	var candidates []candidate
	var readyAt time.Time
	for _, e := range list {
		c, av, at := p.inspect(e, req, now)
		switch av {
		case usable:
			candidates = append(candidates, c)
		case waiting:
			if readyAt.IsZero() || at.Before(readyAt) {
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

// better returns the session that should take the next request of two.
// The one with fewer requests in flight for its weight wins, which keeps
// in-flight counts level as power of two choices does. When both carry
// the same load, as every session does under sequential traffic, one is
// drawn at random in proportion to its capacity: weight times remaining
// quota share. A strict comparison there would send every request to the
// fuller session, herding traffic onto it; the draw spreads it by share.
func better(a, b candidate) candidate {
	loadA, loadB := a.inFlight*b.weight, b.inFlight*a.weight
	switch {
	case loadA < loadB:
		return a
	case loadB < loadA:
		return b
	}
	if rand.Float64()*(a.capacity+b.capacity) < a.capacity {
		return a
	}
	return b
}

// availabilityLocked reports whether e can take req now, and if not, why.
func (p *Pool) availabilityLocked(e *entry, req AcquireRequest, now time.Time) availability {
	switch {
	case e.removed, e.s.Status != store.StatusHealthy, e.unreadable, e.checkingLogin:
		return outOfPool
	case !e.s.ExpiresAt.IsZero() && !now.Before(e.s.ExpiresAt):
		return outOfPool
	case len(req.Exclude) > 0 && slices.Contains(req.Exclude, e.s.ID):
		return outOfPool
	case p.egressBlocked(e, now):
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

// tryLease leases e if it can still take req. It checks again, under e's
// lock, what choose saw, and returns nil when a concurrent request took
// the session's last slot, token or route trial meanwhile.
func (p *Pool) tryLease(e *entry, req AcquireRequest, c *circuit, trial bool, now time.Time) *Lease {
	e.mu.Lock()
	defer e.mu.Unlock()
	if p.availabilityLocked(e, req, now) != usable {
		return nil
	}
	egressTrial, ok := p.claimRoute(e, now)
	if !ok {
		return nil
	}
	return p.leaseLocked(e, req.Model, c, trial, egressTrial, now)
}

// leaseLocked hands e out: it takes a token, counts the request and rests
// the session when it reaches its rotation threshold.
func (p *Pool) leaseLocked(e *entry, model string, c *circuit, trial, egressTrial bool, now time.Time) *Lease {
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
		entry:       e,
		circuit:     c,
		route:       e.route,
		trial:       trial,
		egressTrial: egressTrial,
	}
}
