package pool

import (
	"errors"
	"fmt"
	"time"

	"github.com/grokproxy/grokproxy/internal/upstream"
)

// Circuit states, as CircuitState returns them.
const (
	CircuitClosed   = "closed"    // calls flow
	CircuitOpen     = "open"      // calls fail fast with ErrCircuitOpen
	CircuitHalfOpen = "half_open" // one trial call decides between closed and open
)

// ErrCircuitOpen is returned by Acquire while the provider's circuit is open,
// or half-open with its trial call in flight.
var ErrCircuitOpen = errors.New("upstream circuit open")

// circuit is the breaker of one provider, or of one outbound route to a
// provider when egress is set. Pool.mu guards it.
type circuit struct {
	provider string
	egress   string // route name; empty for the provider's own circuit
	state    string
	calls    window // recent calls and whether each failed
	openedAt time.Time
	trialAt  time.Time // start of the half-open trial call; zero when none
}

// circuitLocked returns provider's circuit, creating it closed.
func (p *Pool) circuitLocked(provider string) *circuit {
	c, ok := p.circuits[provider]
	if !ok {
		c = &circuit{provider: provider, state: CircuitClosed, calls: newWindow(p.cfg.CircuitWindow)}
		p.circuits[provider] = c
		p.metrics.setCircuit(provider, c.state)
	}
	return c
}

// circuitStateLocked returns c's state at now. An open circuit turns
// half-open once CircuitCooldown has passed.
func (p *Pool) circuitStateLocked(c *circuit, now time.Time) string {
	if c.state == CircuitOpen && !now.Before(c.openedAt.Add(p.cfg.CircuitCooldown)) {
		c.state = CircuitHalfOpen
		c.trialAt = time.Time{}
		if c.egress != "" {
			p.metrics.setEgress(c.provider, c.egress, c.state)
			p.log.Info("egress circuit half-open", "upstream", c.provider, "egress", c.egress)
		} else {
			p.metrics.setCircuit(c.provider, c.state)
			p.log.Info("circuit half-open", "upstream", c.provider)
		}
	}
	return c.state
}

// admitLocked decides whether a call to provider may start. trial is set
// for the single call a half-open circuit lets through.
func (p *Pool) admitLocked(provider string, now time.Time) (trial bool, err error) {
	c := p.circuitLocked(provider)
	switch p.circuitStateLocked(c, now) {
	case CircuitClosed:
		return false, nil
	case CircuitHalfOpen:
		// A trial that never reports back frees the slot after a cooldown.
		if c.trialAt.IsZero() || now.Sub(c.trialAt) >= p.cfg.CircuitCooldown {
			c.trialAt = now
			return true, nil
		}
	}
	return false, fmt.Errorf("provider %q: %w", provider, ErrCircuitOpen)
}

// cancelTrialLocked frees the half-open trial slot of a call that never
// started.
func (p *Pool) cancelTrialLocked(provider string) {
	p.circuitLocked(provider).trialAt = time.Time{}
}

// recordCallLocked feeds the outcome of a call into the provider's circuit.
// It reports whether the circuit is open or half-open afterwards: failures
// then belong to the upstream as a whole and are not charged to the
// session. Only unavailable counts as a failure. An anti-bot rejection is
// left to the circuit of the call's route, so a broken browser signature
// never stops the provider as a whole.
func (p *Pool) recordCallLocked(l *Lease, o upstream.Outcome, now time.Time) (upstreamDown bool) {
	c := p.circuitLocked(l.Provider)
	failed := o == upstream.OutcomeUnavailable
	neutral := o == upstream.OutcomeCanceled || o == upstream.OutcomeEgressRejected
	state := p.circuitStateLocked(c, now)

	if l.trial && state == CircuitHalfOpen {
		switch {
		case neutral:
			c.trialAt = time.Time{}
		case failed:
			p.openCircuitLocked(c, now)
		default:
			p.closeCircuitLocked(c, "trial call passed")
		}
		return c.state != CircuitClosed
	}
	if state != CircuitClosed || neutral {
		return state != CircuitClosed
	}

	c.calls.add(failed)
	// The circuit may open after half a window. With the defaults (a
	// window of 20, MinRequests 10) a lone session then stops being charged
	// before an upstream outage can quarantine it.
	if c.calls.n >= max(1, len(c.calls.failed)/2) && c.calls.rate() > p.cfg.CircuitThreshold {
		p.openCircuitLocked(c, now)
	}
	return c.state != CircuitClosed
}

func (p *Pool) openCircuitLocked(c *circuit, now time.Time) {
	c.state = CircuitOpen
	c.openedAt = now
	c.trialAt = time.Time{}
	c.calls.reset()
	// The failures that led up to the outage were most likely the
	// upstream's, so they no longer count toward any session's quarantine.
	for _, e := range p.byProvider[c.provider] {
		e.outcomes.reset()
	}
	p.metrics.setCircuit(c.provider, c.state)
	p.log.Warn("circuit opened", "upstream", c.provider, "until", now.Add(p.cfg.CircuitCooldown))
}

func (p *Pool) closeCircuitLocked(c *circuit, reason string) {
	c.state = CircuitClosed
	c.trialAt = time.Time{}
	c.calls.reset()
	p.metrics.setCircuit(c.provider, c.state)
	p.log.Info("circuit closed", "upstream", c.provider, "reason", reason)
}

// CircuitState returns the state of provider's circuit: "closed", "open"
// or "half_open". A provider the pool has not seen is closed.
func (p *Pool) CircuitState(provider string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.circuits[provider]
	if !ok {
		return CircuitClosed
	}
	return p.circuitStateLocked(c, p.now())
}

// ResetCircuit closes provider's circuit and the circuits of its outbound
// routes, and clears their record of recent calls.
func (p *Pool) ResetCircuit(provider string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.circuits[provider]; ok {
		p.closeCircuitLocked(c, "reset by admin")
	}
	for k, c := range p.egress {
		if k.provider == provider && c.state != CircuitClosed {
			p.closeEgressLocked(c, "reset by admin")
		}
	}
}
