package pool

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/grokproxy/grokproxy/internal/store"
)

const (
	// saveTimeout bounds one state write by the background writer.
	saveTimeout = 10 * time.Second
	// saveRetryDelay is the pause before the writer retries failed writes.
	saveRetryDelay = time.Second
)

// markDirtyLocked schedules e's state for saving. A status change (urgent)
// starts the writer at once. Counters and timestamps wait for the next
// health-check tick, Flush or Close, so traffic does not turn into one
// write per request.
func (p *Pool) markDirtyLocked(e *entry, urgent bool) {
	p.dirty[e.s.ID] = p.dirty[e.s.ID] || urgent
	if urgent {
		p.startWriterLocked(false)
	}
}

// startWriterLocked starts the background writer unless it is running.
// With all set, its next pass saves counter-only changes too.
func (p *Pool) startWriterLocked(all bool) {
	if all {
		p.writeAll = true
	}
	if p.writing || p.closed || len(p.dirty) == 0 {
		return
	}
	p.writing = true
	go p.writeLoop()
}

// writeLoop saves dirty states until none that it should save is left.
// After a failed write it waits and tries again, so the last state of a
// session reaches the store once the store is back.
func (p *Pool) writeLoop() {
	for {
		p.mu.Lock()
		ids := p.dirtyIDsLocked(p.writeAll)
		p.writeAll = false
		if len(ids) == 0 || p.closed {
			p.writing = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()

		var failed int
		var lastErr error
		for _, id := range ids {
			ctx, cancel := context.WithTimeout(context.Background(), saveTimeout)
			if err := p.save(ctx, id); err != nil {
				failed++
				lastErr = err
			}
			cancel()
		}
		if failed == 0 {
			continue
		}

		p.log.Error("save session state", "failed", failed, "error", lastErr)
		select {
		case <-time.After(saveRetryDelay):
			p.mu.Lock()
			p.writeAll = true // retry the failed counter-only writes as well
			p.mu.Unlock()
		case <-p.ctx.Done():
			p.mu.Lock()
			p.writing = false
			p.mu.Unlock()
			return
		}
	}
}

// dirtyIDsLocked lists the sessions with unsaved status changes, or with
// any unsaved change when all is set.
func (p *Pool) dirtyIDsLocked(all bool) []string {
	var ids []string
	for id, urgent := range p.dirty {
		if urgent || all {
			ids = append(ids, id)
		}
	}
	return ids
}

// save writes the current state of session id if it has unsaved changes.
// On failure the session stays dirty.
func (p *Pool) save(ctx context.Context, id string) error {
	p.saveMu.Lock()
	defer p.saveMu.Unlock()

	p.mu.Lock()
	e, ok := p.entries[id]
	urgent, dirty := p.dirty[id]
	if !ok || !dirty {
		p.mu.Unlock()
		return nil
	}
	delete(p.dirty, id)
	st := e.state()
	p.mu.Unlock()

	err := p.st.SaveSessionState(ctx, id, st)
	if errors.Is(err, store.ErrNotFound) {
		return nil // removed meanwhile
	}
	if err != nil {
		p.mu.Lock()
		if _, ok := p.entries[id]; ok {
			p.dirty[id] = p.dirty[id] || urgent
		}
		p.mu.Unlock()
		return fmt.Errorf("save session %q: %w", id, err)
	}
	return nil
}

// Flush saves every unsaved session state, counters included, and waits
// for a write already in progress. It returns the first write error, or
// ctx's error when changes keep arriving until ctx ends.
func (p *Pool) Flush(ctx context.Context) error {
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("flush session states: %w", err)
		}
		p.mu.Lock()
		ids := p.dirtyIDsLocked(true)
		p.mu.Unlock()
		for _, id := range ids {
			if err := p.save(ctx, id); err != nil {
				return err
			}
		}

		// A write the background writer started before this pass may
		// still be running, and may fail and mark its session dirty.
		p.saveMu.Lock()
		p.mu.Lock()
		left := len(p.dirty)
		p.mu.Unlock()
		p.saveMu.Unlock()
		if left == 0 {
			return nil
		}
	}
}

// saveNow writes session id's state before an admin call returns, so the
// caller learns about a store failure.
func (p *Pool) saveNow(ctx context.Context, id string) error {
	p.mu.Lock()
	if _, ok := p.entries[id]; ok {
		p.dirty[id] = true
	}
	p.mu.Unlock()
	return p.save(ctx, id)
}
