package pool

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
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

// Circuit state codes, held in circuit.state.
const (
	stateClosed int32 = iota
	stateOpen
	stateHalfOpen
)

var stateNames = [...]string{stateClosed: CircuitClosed, stateOpen: CircuitOpen, stateHalfOpen: CircuitHalfOpen}

// circuit is the breaker of one provider, or of one outbound route to a
// provider when egress is set. While it is closed, the request path reads
// its state and records calls with atomic operations only. mu is taken to
// change the state, and on every call while the circuit is open or
// half-open.
type circuit struct {
	provider string
	egress   string // route name; empty for the provider's own circuit
	calls    callWindow
	state    atomic.Int32 // a state code; changed only under mu
	// carried is set once a call went out by the route; EgressStates
	// lists only such routes.
	carried atomic.Bool

	mu       sync.Mutex // guards the fields below
	openedAt time.Time
	trialAt  time.Time // start of the half-open trial call; zero when none
}

func newCircuit(provider, egress string, window int) *circuit {
	return &circuit{provider: provider, egress: egress, calls: newCallWindow(window)}
}

// closed reports whether c is closed, without locking.
func (c *circuit) closed() bool {
	return c.state.Load() == stateClosed
}

// name returns c's state as recorded, without the move from open to
// half-open that time may have brought.
func (c *circuit) name() string {
	return stateNames[c.state.Load()]
}

// circuitState returns c's state at now.
func (p *Pool) circuitState(c *circuit, now time.Time) string {
	if c.closed() {
		return CircuitClosed
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return p.circuitStateLocked(c, now)
}

// circuitStateLocked returns c's state at now. An open circuit turns
// half-open once CircuitCooldown has passed. The caller holds c.mu.
func (p *Pool) circuitStateLocked(c *circuit, now time.Time) string {
	if c.state.Load() == stateOpen && !now.Before(c.openedAt.Add(p.cfg.CircuitCooldown)) {
		c.state.Store(stateHalfOpen)
		c.trialAt = time.Time{}
		if c.egress != "" {
			p.metrics.setEgress(c.provider, c.egress, CircuitHalfOpen)
			p.log.Info("egress circuit half-open", "upstream", c.provider, "egress", c.egress)
		} else {
			p.metrics.setCircuit(c.provider, CircuitHalfOpen)
			p.log.Info("circuit half-open", "upstream", c.provider)
		}
	}
	return c.name()
}

// admit decides whether a call through c may start. trial is set for the
// single call a half-open circuit lets through.
func (p *Pool) admit(c *circuit, now time.Time) (trial bool, err error) {
	if c.closed() {
		return false, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
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
	return false, fmt.Errorf("provider %q: %w", c.provider, ErrCircuitOpen)
}

// cancelTrial frees the half-open trial slot of a call that never
// started.
func (p *Pool) cancelTrial(c *circuit) {
	c.mu.Lock()
	c.trialAt = time.Time{}
	c.mu.Unlock()
}

// recordCall feeds the outcome of a call into the provider's circuit. It
// reports whether the circuit is open or half-open afterwards: failures
// then belong to the upstream as a whole and are not charged to the
// session. Only unavailable counts as a failure. An anti-bot rejection is
// left to the circuit of the call's route, so a broken browser signature
// never stops the provider as a whole.
func (p *Pool) recordCall(l *Lease, o upstream.Outcome, now time.Time) (upstreamDown bool) {
	c := l.circuit
	failed := o == upstream.OutcomeUnavailable
	neutral := o == upstream.OutcomeCanceled || o == upstream.OutcomeEgressRejected

	if l.trial || !c.closed() {
		c.mu.Lock()
		state := p.circuitStateLocked(c, now)
		if l.trial && state == CircuitHalfOpen {
			opened := false
			switch {
			case neutral:
				c.trialAt = time.Time{}
			case failed:
				p.openCircuitLocked(c, now)
				opened = true
			default:
				p.closeCircuitLocked(c, "trial call passed")
			}
			down := !c.closed()
			c.mu.Unlock()
			if opened {
				p.forgetFailures(c.provider)
			}
			return down
		}
		c.mu.Unlock()
		if state != CircuitClosed {
			return true
		}
	}
	if neutral {
		return false
	}

	c.calls.add(failed)
	// The circuit may open after half a window. With the defaults (a
	// window of 20, MinRequests 10) a lone session then stops being charged
	// before an upstream outage can quarantine it.
	if !c.calls.over(p.cfg.CircuitThreshold) {
		return false
	}
	c.mu.Lock()
	opened := c.closed() && c.calls.over(p.cfg.CircuitThreshold)
	if opened {
		p.openCircuitLocked(c, now)
	}
	c.mu.Unlock()
	if opened {
		p.forgetFailures(c.provider)
	}
	return true
}

// openCircuitLocked opens c. The caller holds c.mu and, once it has let
// go of c.mu, calls forgetFailures for c's provider.
func (p *Pool) openCircuitLocked(c *circuit, now time.Time) {
	c.state.Store(stateOpen)
	c.openedAt = now
	c.trialAt = time.Time{}
	c.calls.reset()
	p.metrics.setCircuit(c.provider, CircuitOpen)
	p.log.Warn("circuit opened", "upstream", c.provider, "until", now.Add(p.cfg.CircuitCooldown))
}

// forgetFailures clears the recent outcomes of provider's sessions. The
// failures that led up to an outage were most likely the upstream's, so
// they no longer count toward any session's quarantine.
func (p *Pool) forgetFailures(provider string) {
	for _, e := range p.roster.Load().byProvider[provider] {
		e.mu.Lock()
		e.outcomes.reset()
		e.mu.Unlock()
	}
}

// closeCircuitLocked closes c. The caller holds c.mu.
func (p *Pool) closeCircuitLocked(c *circuit, reason string) {
	c.state.Store(stateClosed)
	c.trialAt = time.Time{}
	c.calls.reset()
	p.metrics.setCircuit(c.provider, CircuitClosed)
	p.log.Info("circuit closed", "upstream", c.provider, "reason", reason)
}

// CircuitState returns the state of provider's circuit: "closed", "open"
// or "half_open". A provider the pool has not seen is closed.
func (p *Pool) CircuitState(provider string) string {
	c, ok := p.roster.Load().circuits[provider]
	if !ok {
		return CircuitClosed
	}
	return p.circuitState(c, p.now())
}

// ResetCircuit closes provider's circuit and the circuits of its outbound
// routes, and clears their record of recent calls.
func (p *Pool) ResetCircuit(provider string) {
	if c, ok := p.roster.Load().circuits[provider]; ok {
		c.mu.Lock()
		p.closeCircuitLocked(c, "reset by admin")
		c.mu.Unlock()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, c := range p.egress {
		if k.provider != provider {
			continue
		}
		c.mu.Lock()
		if !c.closed() {
			p.closeEgressLocked(c, "reset by admin")
		}
		c.mu.Unlock()
	}
}
