package pool

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/grokproxy/grokproxy/internal/store"
	"github.com/grokproxy/grokproxy/internal/upstream"
)

// probeTimeout bounds one probe: a health check or a login check.
const probeTimeout = 30 * time.Second

// Result is the outcome of one upstream call.
type Result struct {
	// Err is nil on success. An *upstream.Error carries the outcome; any
	// other error counts as unavailable, except context.Canceled, which
	// counts as canceled.
	Err     error
	Latency time.Duration
}

// Release returns a lease and applies the call's outcome to its session
// and to the provider's circuit:
//
//   - ok counts a success and spends one unit of the model's known quota.
//   - rate_limited rests the session until the upstream reset time, or
//     for DefaultCooldown when unknown. The session stays healthy.
//   - unauthorized takes the session out of rotation while a probe checks
//     the login in the background. The session expires only if the probe
//     is rejected too.
//   - blocked quarantines the session.
//   - unavailable and broken_stream count a failure, unless the circuit is
//     open or half-open. A failure rate above FailureThreshold over the
//     window, once MinRequests calls are in it, quarantines the session.
//   - egress_rejected counts against the circuit of the call's outbound
//     route; while that circuit is open, no session behind the route is
//     selected.
//   - egress_rejected, rejected_request and canceled are not charged to
//     the session.
//
// A second Release of the same lease does nothing.
//
// Release takes no pool-wide lock: it locks the lease's session and, only
// while a circuit is not closed, that circuit.
func (p *Pool) Release(l *Lease, res Result) {
	if l == nil || !l.released.CompareAndSwap(false, true) {
		return
	}
	outcome := outcomeOf(res.Err)
	now := p.now()
	upstreamDown := p.recordCall(l, outcome, now)
	p.recordEgress(l, outcome, now)

	e := l.entry
	e.mu.Lock()
	p.applyOutcomeLocked(e, l.model, outcome, res.Err, upstreamDown, now)
	e.mu.Unlock()
	p.settleGauges(now)
}

// applyOutcomeLocked ends a call on e and applies its outcome, as Release
// describes.
func (p *Pool) applyOutcomeLocked(e *entry, model string, outcome upstream.Outcome, err error,
	upstreamDown bool, now time.Time) {
	if e.removed {
		return // removed while the call ran
	}
	e.inFlight = max(0, e.inFlight-1)

	switch outcome {
	case upstream.OutcomeOK:
		p.spendQuotaLocked(e, model)
		p.chargeLocked(e, false, now)
	case upstream.OutcomeRateLimited:
		p.restLocked(e, p.resetTimeLocked(e, model, err, now), ReasonRateLimited, now)
	case upstream.OutcomeUnauthorized:
		p.checkLoginLocked(e, now)
	case upstream.OutcomeBlocked:
		if e.s.Status == store.StatusHealthy {
			p.setStatusLocked(e, store.StatusQuarantined, ReasonBlocked, "", now)
		}
	case upstream.OutcomeUnavailable, upstream.OutcomeBrokenStream:
		if !upstreamDown {
			p.chargeLocked(e, true, now)
		}
	}
}

// outcomeOf classifies err as upstream.OutcomeOf does, except that a bare
// context.Canceled (the client went away) is canceled, not unavailable.
func outcomeOf(err error) upstream.Outcome {
	if err == nil {
		return upstream.OutcomeOf(nil)
	}
	var ue *upstream.Error
	if !errors.As(err, &ue) && errors.Is(err, context.Canceled) {
		return upstream.OutcomeCanceled
	}
	return upstream.OutcomeOf(err)
}

// chargeLocked counts a call against e and quarantines e when its failure
// rate is over the threshold.
func (p *Pool) chargeLocked(e *entry, failed bool, now time.Time) {
	e.outcomes.add(failed)
	if failed {
		e.s.FailureCount++
	} else {
		e.s.SuccessCount++
	}
	p.markDirtyLocked(e, false)

	minRequests := min(p.cfg.MinRequests, p.cfg.FailureWindow)
	rate := e.outcomes.rate()
	if !failed || e.s.Status != store.StatusHealthy || e.outcomes.n < minRequests || rate <= p.cfg.FailureThreshold {
		return
	}
	detail := fmt.Sprintf("failure rate %.2f over the last %d requests", rate, e.outcomes.n)
	p.setStatusLocked(e, store.StatusQuarantined, ReasonFailureRate, detail, now)
}

// spendQuotaLocked takes one unit from the known quota of model.
func (p *Pool) spendQuotaLocked(e *entry, model string) {
	q, ok := e.s.Metadata.Quota[model]
	if !ok || q.Remaining <= 0 {
		return
	}
	q.Remaining--
	e.s.Metadata.Quota[model] = q
}

// resetTimeLocked returns when a rate-limited session may serve again: the
// upstream's Retry-After, else the model's known quota reset, else
// DefaultCooldown from now.
func (p *Pool) resetTimeLocked(e *entry, model string, err error, now time.Time) time.Time {
	var ue *upstream.Error
	if errors.As(err, &ue) && ue.RetryAfter > 0 {
		return now.Add(ue.RetryAfter)
	}
	if q, ok := e.s.Metadata.Quota[model]; ok && q.ResetAt.After(now) {
		return q.ResetAt
	}
	return now.Add(p.cfg.DefaultCooldown)
}

// checkLoginLocked starts a background probe that confirms an unauthorized
// response before e expires. Without a client to probe with, e expires now.
func (p *Pool) checkLoginLocked(e *entry, now time.Time) {
	if e.checkingLogin || e.s.Status != store.StatusHealthy || p.ctx.Err() != nil {
		return
	}
	client := p.clients[e.s.Provider]
	if client == nil {
		p.setStatusLocked(e, store.StatusExpired, ReasonUnauthorized, "upstream rejected the login", now)
		return
	}
	if !p.startBackground() {
		return // shutting down
	}
	e.checkingLogin = true
	go p.confirmLogin(e, client, credentialOf(e))
}

// confirmLogin probes a session that got an unauthorized response. A probe
// rejected as unauthorized expires the session. A passing probe returns it
// to rotation. Any other failure leaves the question open, so the session
// is quarantined and the health check probes it again.
func (p *Pool) confirmLogin(e *entry, client upstream.Client, cred upstream.Credential) {
	defer p.wg.Done()
	ctx, cancel := context.WithTimeout(p.ctx, probeTimeout)
	probe, err := client.Probe(ctx, cred)
	cancel()

	now := p.now()
	e.mu.Lock()
	p.settleLoginLocked(e, probe, err, now)
	e.mu.Unlock()
	p.settleGauges(now)
}

// settleLoginLocked applies the result of a login check to e.
func (p *Pool) settleLoginLocked(e *entry, probe upstream.Probe, err error, now time.Time) {
	if e.removed {
		return
	}
	e.checkingLogin = false
	// On shutdown, or when an admin changed the status meanwhile, the
	// check has nothing left to decide.
	if p.ctx.Err() != nil || e.s.Status != store.StatusHealthy {
		return
	}

	switch outcome := outcomeOf(err); outcome {
	case upstream.OutcomeOK:
		p.applyProbeLocked(e, probe, now)
		p.log.Info("login check passed", "session_id", e.s.ID, "upstream", e.s.Provider)
	case upstream.OutcomeUnauthorized:
		p.setStatusLocked(e, store.StatusExpired, ReasonUnauthorized, "upstream rejected the login and a login check confirmed it", now)
	default:
		detail := fmt.Sprintf("login check after an unauthorized response ended in %s", outcome)
		p.setStatusLocked(e, store.StatusQuarantined, ReasonLoginCheckFailed, detail, now)
	}
}

// credentialOf returns what a client needs to call upstream as e.
func credentialOf(e *entry) upstream.Credential {
	return upstream.Credential{
		SessionID: e.s.ID,
		Secret:    e.cred,
		ProxyURL:  e.proxy,
		AccountID: e.s.Metadata.AccountID,
	}
}
