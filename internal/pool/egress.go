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

// routeLocked returns the circuit of k, creating it closed. The caller
// holds p.mu. An egress circuit counts anti-bot rejections
// (egress_rejected) against the route, so a broken browser signature or a
// banned proxy stops the calls that go out by that route without charging
// any session.
func (p *Pool) routeLocked(k egressKey) *circuit {
	c, ok := p.egress[k]
	if !ok {
		c = newCircuit(k.provider, k.name, p.cfg.CircuitWindow)
		p.egress[k] = c
	}
	return c
}

// egressBlocked reports whether e's route takes no call now: its circuit
// is open, or half-open with the trial call in flight.
func (p *Pool) egressBlocked(e *entry, now time.Time) bool {
	c := e.route
	if c.closed() {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return p.routeBlockedLocked(c, now)
}

// routeBlockedLocked is egressBlocked for the caller that holds c.mu.
func (p *Pool) routeBlockedLocked(c *circuit, now time.Time) bool {
	switch p.circuitStateLocked(c, now) {
	case CircuitOpen:
		return true
	case CircuitHalfOpen:
		return !c.trialAt.IsZero() && now.Sub(c.trialAt) < p.cfg.CircuitCooldown
	}
	return false
}

// claimRoute checks e's route once more as a lease is made, and makes the
// call the trial of a half-open route circuit. ok is false when the route
// takes no call now, such as when another request claimed the trial since
// e was chosen.
func (p *Pool) claimRoute(e *entry, now time.Time) (trial, ok bool) {
	c := e.route
	if c.closed() {
		return false, true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p.routeBlockedLocked(c, now) {
		return false, false
	}
	if c.name() != CircuitHalfOpen {
		return false, true
	}
	c.trialAt = now
	return true, true
}

// recordEgress feeds the outcome of a call into the circuit of its route.
// A rejection by anti-bot rules is a failure. Any answer that shows the
// request got through (ok, a rate limit, a login or input rejection) is a
// success. Unavailable and canceled calls say nothing about the route.
func (p *Pool) recordEgress(l *Lease, o upstream.Outcome, now time.Time) {
	c := l.route
	if !c.carried.Load() {
		c.mu.Lock()
		if !c.carried.Load() {
			c.carried.Store(true)
			p.metrics.setEgress(c.provider, c.egress, c.name())
		}
		c.mu.Unlock()
	}
	neutral := o == upstream.OutcomeUnavailable || o == upstream.OutcomeCanceled
	failed := o == upstream.OutcomeEgressRejected

	if l.egressTrial || !c.closed() {
		c.mu.Lock()
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
		}
		c.mu.Unlock()
		if state != CircuitClosed {
			return
		}
	}
	if neutral {
		return
	}
	c.calls.add(failed)
	if !c.calls.over(p.cfg.EgressThreshold) {
		return
	}
	c.mu.Lock()
	if c.closed() && c.calls.over(p.cfg.EgressThreshold) {
		p.openEgressLocked(c, now)
	}
	c.mu.Unlock()
}

// openEgressLocked opens c. The caller holds c.mu.
func (p *Pool) openEgressLocked(c *circuit, now time.Time) {
	c.state.Store(stateOpen)
	c.openedAt = now
	c.trialAt = time.Time{}
	c.calls.reset()
	p.metrics.setEgress(c.provider, c.egress, CircuitOpen)
	p.log.Warn("egress circuit opened", "upstream", c.provider, "egress", c.egress,
		"until", now.Add(p.cfg.CircuitCooldown))
}

// closeEgressLocked closes c. The caller holds c.mu.
func (p *Pool) closeEgressLocked(c *circuit, reason string) {
	c.state.Store(stateClosed)
	c.trialAt = time.Time{}
	c.calls.reset()
	p.metrics.setEgress(c.provider, c.egress, CircuitClosed)
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
	return p.egressStates(p.now())
}
