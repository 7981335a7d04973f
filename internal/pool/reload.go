package pool

import (
	"context"
	"fmt"

	"github.com/grokproxy/grokproxy/internal/store"
)

// Reload brings the pool in line with rows that other processes wrote: the
// CLI importing sessions beside a running server, or another replica that
// an admin used. It adds new rows, drops rows deleted from the store, and
// takes over the status, rest and settings of a row whose state this pool
// has not changed since its last save. Run calls it on every pass.
//
// Counters, failure windows and in-flight counts stay as this process
// keeps them.
func (p *Pool) Reload(ctx context.Context) error {
	// Holding saveMu keeps the background writer from saving between the
	// read below and its use: a state read before a save must not undo it.
	p.saveMu.Lock()
	defer p.saveMu.Unlock()

	p.mu.Lock()
	p.loads++
	pass := p.loads
	p.mu.Unlock()

	sessions, err := p.st.Sessions(ctx, store.SessionFilter{})
	if err != nil {
		return fmt.Errorf("reload sessions: %w", err)
	}

	now := p.now()
	var fresh []store.Session
	seen := make(map[string]bool, len(sessions))
	for _, s := range sessions {
		seen[s.ID] = true
		if e := p.lookup(s.ID); e != nil {
			e.mu.Lock()
			p.adoptLocked(e, s)
			e.mu.Unlock()
			continue
		}
		fresh = append(fresh, s)
	}
	p.settleGauges(now)

	// Decrypt before taking the lock: thousands of new rows must not
	// stall Add or Remove.
	entries := make([]*entry, 0, len(fresh))
	for _, s := range fresh {
		entries = append(entries, p.newEntry(s, now))
	}

	p.mu.Lock()
	added := 0
	for _, e := range entries {
		if p.lookup(e.s.ID) != nil {
			continue // added by this process meanwhile
		}
		p.addEntryLocked(e)
		added++
		p.log.Info("session loaded from the store", "session_id", e.s.ID, "upstream", e.s.Provider)
	}
	gone := make(map[*entry]bool)
	p.roster.Load().all(func(e *entry) {
		// An entry that joined after this pass began may belong to a row
		// written after the read above.
		if seen[e.s.ID] || e.loadedAt >= pass {
			return
		}
		gone[e] = true
		p.log.Info("session removed from the store by another process", "session_id", e.s.ID)
	})
	p.removeEntriesLocked(gone)
	p.mu.Unlock()

	if added > 0 || len(gone) > 0 {
		p.refreshGauges(now)
	}
	return nil
}

// adoptLocked takes over the stored state of e's row when another process
// changed it and this pool holds no unsaved change of its own. The caller
// calls settleGauges after it lets go of e.
func (p *Pool) adoptLocked(e *entry, s store.Session) {
	if e.dirty || e.checkingLogin {
		return
	}
	e.s.Label, e.s.Weight, e.s.MaxConcurrency, e.s.ExpiresAt = s.Label, s.Weight, s.MaxConcurrency, s.ExpiresAt
	if s.CooldownUntil.After(e.s.CooldownUntil) {
		e.s.CooldownUntil = s.CooldownUntil
	}
	if s.Status == e.s.Status && s.StatusReason == e.s.StatusReason {
		return
	}
	p.log.Info("session status changed by another process", "session_id", e.s.ID, "upstream", e.s.Provider,
		"from", e.s.Status, "status", s.Status, "reason", s.StatusReason)
	e.s.Status, e.s.StatusReason = s.Status, s.StatusReason
	e.s.Metadata.History = s.Metadata.History
	e.outcomes.reset()
	p.gaugesStale.Store(true)
}
