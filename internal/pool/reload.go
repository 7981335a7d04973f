package pool

import (
	"context"
	"fmt"
	"time"

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
	var fresh []*entry
	p.mu.Lock()
	seen := make(map[string]bool, len(sessions))
	for _, s := range sessions {
		seen[s.ID] = true
		if e, ok := p.entries[s.ID]; ok {
			p.adoptLocked(e, s, now)
			continue
		}
		fresh = append(fresh, &entry{s: s})
	}
	p.mu.Unlock()

	// Decrypt outside the lock: thousands of new rows must not stall
	// Acquire.
	for i, e := range fresh {
		fresh[i] = p.newEntry(e.s, now)
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	added, removed := 0, 0
	for _, e := range fresh {
		if _, ok := p.entries[e.s.ID]; ok {
			continue // added by this process meanwhile
		}
		p.addEntryLocked(e)
		added++
		p.log.Info("session loaded from the store", "session_id", e.s.ID, "upstream", e.s.Provider)
	}
	for id, e := range p.entries {
		// An entry that joined after this pass began may belong to a row
		// written after the read above.
		if seen[id] || e.loadedAt >= pass {
			continue
		}
		p.removeEntryLocked(e)
		removed++
		p.log.Info("session removed from the store by another process", "session_id", id)
	}
	if added > 0 || removed > 0 {
		p.refreshGaugesLocked(now)
	}
	return nil
}

// adoptLocked takes over the stored state of e's row when another process
// changed it and this pool holds no unsaved change of its own.
func (p *Pool) adoptLocked(e *entry, s store.Session, now time.Time) {
	if _, dirty := p.dirty[e.s.ID]; dirty || e.checkingLogin {
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
	p.refreshGaugesLocked(now)
}
