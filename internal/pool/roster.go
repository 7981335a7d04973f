package pool

import "maps"

// roster is the set of sessions and provider circuits at one moment. It is
// never changed once published: a writer holding Pool.mu builds the next
// roster and stores it in Pool.roster, so the request path reads it
// without a lock. The entries and circuits it points to are shared between
// rosters and carry their own locks.
type roster struct {
	// byProvider lists the sessions of each provider in no set order.
	//
	// NOTE: a roster built by addEntryLocked appends to the previous
	// roster's slice, which may share its backing array. That is safe only
	// because no roster's slice is ever written below its length: removal
	// always builds a fresh slice.
	byProvider map[string][]*entry
	circuits   map[string]*circuit // provider's own circuit
}

// all calls fn for every session of every provider.
func (r *roster) all(fn func(e *entry)) {
	for _, list := range r.byProvider {
		for _, e := range list {
			fn(e)
		}
	}
}

// lookup returns session id, or nil when the pool does not hold it.
func (p *Pool) lookup(id string) *entry {
	v, ok := p.byID.Load(id)
	if !ok {
		return nil
	}
	return v.(*entry)
}

// circuit returns provider's circuit, creating it closed.
func (p *Pool) circuit(provider string) *circuit {
	if c, ok := p.roster.Load().circuits[provider]; ok {
		return c
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.circuitLocked(provider)
}

// circuitLocked returns provider's circuit, creating it closed and
// publishing a roster that holds it. The caller holds p.mu.
func (p *Pool) circuitLocked(provider string) *circuit {
	cur := p.roster.Load()
	if c, ok := cur.circuits[provider]; ok {
		return c
	}
	c := newCircuit(provider, "", p.cfg.CircuitWindow)
	p.metrics.setCircuit(provider, CircuitClosed)
	next := &roster{byProvider: cur.byProvider, circuits: maps.Clone(cur.circuits)}
	next.circuits[provider] = c
	p.roster.Store(next)
	return c
}

// addEntryLocked puts e in the pool. The caller holds p.mu.
func (p *Pool) addEntryLocked(e *entry) {
	e.loadedAt = p.loads
	e.route = p.routeLocked(egressKey{e.s.Provider, e.egress})
	p.circuitLocked(e.s.Provider)

	cur := p.roster.Load()
	next := &roster{byProvider: maps.Clone(cur.byProvider), circuits: cur.circuits}
	next.byProvider[e.s.Provider] = append(cur.byProvider[e.s.Provider], e)
	p.byID.Store(e.s.ID, e)
	p.roster.Store(next)
}

// removeEntriesLocked takes the given sessions out of the pool. Leases on
// them stay valid, and their Release changes nothing. The caller holds
// p.mu.
func (p *Pool) removeEntriesLocked(gone map[*entry]bool) {
	if len(gone) == 0 {
		return
	}
	cur := p.roster.Load()
	next := &roster{byProvider: make(map[string][]*entry, len(cur.byProvider)), circuits: cur.circuits}
	for provider, list := range cur.byProvider {
		kept := make([]*entry, 0, len(list))
		for _, e := range list {
			if !gone[e] {
				kept = append(kept, e)
			}
		}
		next.byProvider[provider] = kept
	}
	p.roster.Store(next)

	for e := range gone {
		p.byID.CompareAndDelete(e.s.ID, e)
		e.mu.Lock()
		e.removed = true
		e.mu.Unlock()
	}
}

// replaceLocked makes entries the pool's whole set of sessions. The caller
// holds p.mu.
func (p *Pool) replaceLocked(entries []*entry) {
	gone := make(map[*entry]bool)
	p.roster.Load().all(func(e *entry) { gone[e] = true })
	p.removeEntriesLocked(gone)
	for _, e := range entries {
		p.addEntryLocked(e)
	}
}
