package pool

import (
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/grokproxy/grokproxy/internal/secret"
	"github.com/grokproxy/grokproxy/internal/upstream"
)

// egressDirect names the route without an outbound proxy.
const egressDirect = "direct"

// egressName returns the name of the route a session's calls leave by:
// "direct", or "proxy-" and the first 12 hex digits of the SHA-256 of the
// proxy URL. The name is a metric label and a log value, so it never holds
// the URL, which may carry a password.
func egressName(proxy secret.Value) string {
	if proxy.Empty() {
		return egressDirect
	}
	sum := sha256.Sum256([]byte(proxy.Reveal()))
	return "proxy-" + hex.EncodeToString(sum[:6])
}

// egressKey identifies the circuit of one route to one provider.
type egressKey struct {
	provider string
	name     string
}

// egressCircuitLocked returns the circuit of k, creating it closed. An
// egress circuit counts anti-bot rejections (egress_rejected) against the
// route, so a broken browser signature or a banned proxy stops the calls
// that go out by that route without charging any session.
func (p *Pool) egressCircuitLocked(k egressKey) *circuit {
	c, ok := p.egress[k]
	if !ok {
		c = &circuit{provider: k.provider, egress: k.name, state: CircuitClosed, calls: newWindow(p.cfg.CircuitWindow)}
		p.egress[k] = c
		p.metrics.setEgress(k.provider, k.name, c.state)
	}
	return c
}

// egressBlockedLocked reports whether e's route takes no call now: its
// circuit is open, or half-open with the trial call in flight.
func (p *Pool) egressBlockedLocked(e *entry, now time.Time) bool {
	c, ok := p.egress[egressKey{e.s.Provider, e.egress}]
	if !ok {
		return false
	}
	switch p.circuitStateLocked(c, now) {
	case CircuitOpen:
		return true
	case CircuitHalfOpen:
		return !c.trialAt.IsZero() && now.Sub(c.trialAt) < p.cfg.CircuitCooldown
	}
	return false
}

// claimEgressTrialLocked marks the call that leaves by e's route as the
// half-open circuit's trial, when the circuit is half-open.
func (p *Pool) claimEgressTrialLocked(e *entry, now time.Time) bool {
	c, ok := p.egress[egressKey{e.s.Provider, e.egress}]
	if !ok || p.circuitStateLocked(c, now) != CircuitHalfOpen {
		return false
	}
	c.trialAt = now
	return true
}

// recordEgressLocked feeds the outcome of a call into the circuit of its
// route. A rejection by anti-bot rules is a failure. Any answer that shows
// the request got through (ok, a rate limit, a login or input rejection) is
// a success. Unavailable and canceled calls say nothing about the route.
func (p *Pool) recordEgressLocked(l *Lease, o upstream.Outcome, now time.Time) {
	c := p.egressCircuitLocked(egressKey{l.Provider, l.egress})
	neutral := o == upstream.OutcomeUnavailable || o == upstream.OutcomeCanceled
	failed := o == upstream.OutcomeEgressRejected
	state := p.circuitStateLocked(c, now)

	if l.egressTrial && state == CircuitHalfOpen {
		switch {
		case neutral:
			c.trialAt = time.Time{}
		case failed:
			p.openEgressLocked(c, now)
		default:
			p.closeEgressLocked(c, "trial call passed")
		}
		return
	}
	if state != CircuitClosed || neutral {
		return
	}
	c.calls.add(failed)
	if c.calls.n >= max(1, len(c.calls.failed)/2) && c.calls.rate() > p.cfg.EgressThreshold {
		p.openEgressLocked(c, now)
	}
}

func (p *Pool) openEgressLocked(c *circuit, now time.Time) {
	c.state = CircuitOpen
	c.openedAt = now
	c.trialAt = time.Time{}
	c.calls.reset()
	p.metrics.setEgress(c.provider, c.egress, c.state)
	p.log.Warn("egress circuit opened", "upstream", c.provider, "egress", c.egress,
		"until", now.Add(p.cfg.CircuitCooldown))
	p.refreshGaugesLocked(now)
}

func (p *Pool) closeEgressLocked(c *circuit, reason string) {
	c.state = CircuitClosed
	c.trialAt = time.Time{}
	c.calls.reset()
	p.metrics.setEgress(c.provider, c.egress, c.state)
	p.log.Info("egress circuit closed", "upstream", c.provider, "egress", c.egress, "reason", reason)
}

// EgressState is the circuit state of one outbound route.
type EgressState struct {
	Provider string `json:"provider"`
	// Egress is "direct" or "proxy-" and a hash of the proxy URL.
	Egress string `json:"egress"`
	State  string `json:"state"`
	// Sessions is the number of sessions that use the route.
	Sessions int `json:"sessions"`
}

// EgressStates returns the circuit of every route that carried a call,
// sorted by provider and route.
func (p *Pool) EgressStates() []EgressState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.egressStatesLocked(p.now())
}
