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
	e.dirty = true
	if urgent {
		e.urgent = true
		p.startWriter(false)
	}
}

// startWriter starts the background writer unless it is running, in which
// case the writer looks for changes once more before it stops. With all
// set, its next pass saves counter-only changes too.
func (p *Pool) startWriter(all bool) {
	p.writerMu.Lock()
	defer p.writerMu.Unlock()
	if all {
		p.writeAll = true
	}
	p.wake = true
	if p.writing || p.closed {
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
		p.writerMu.Lock()
		all := p.writeAll
		p.writeAll, p.wake = false, false
		if p.closed {
			p.writing = false
			p.writerMu.Unlock()
			return
		}
		p.writerMu.Unlock()

		ids := p.dirtyIDs(all)
		if len(ids) == 0 {
			p.writerMu.Lock()
			// A change marked after the scan began sets wake; scan again.
			again := p.wake || p.writeAll
			if !again {
				p.writing = false
			}
			p.writerMu.Unlock()
			if again {
				continue
			}
			return
		}

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
			p.writerMu.Lock()
			p.writeAll = true // retry the failed counter-only writes as well
			p.writerMu.Unlock()
		case <-p.ctx.Done():
			p.writerMu.Lock()
			p.writing = false
			p.writerMu.Unlock()
			return
		}
	}
}

// dirtyIDs lists the sessions with unsaved status changes, or with any
// unsaved change when all is set.
func (p *Pool) dirtyIDs(all bool) []string {
	var ids []string
	p.roster.Load().all(func(e *entry) {
		e.mu.Lock()
		if e.urgent || (all && e.dirty) {
			ids = append(ids, e.s.ID)
		}
		e.mu.Unlock()
	})
	return ids
}

// save writes the current state of session id if it has unsaved changes.
// On failure the session stays dirty.
func (p *Pool) save(ctx context.Context, id string) error {
	p.saveMu.Lock()
	defer p.saveMu.Unlock()

	e := p.lookup(id)
	if e == nil {
		return nil
	}
	e.mu.Lock()
	if e.removed || !e.dirty {
		e.mu.Unlock()
		return nil
	}
	urgent := e.urgent
	e.dirty, e.urgent = false, false
	st := e.state()
	e.mu.Unlock()

	err := p.st.SaveSessionState(ctx, id, st)
	if errors.Is(err, store.ErrNotFound) {
		return nil // removed meanwhile
	}
	if err != nil {
		e.mu.Lock()
		if !e.removed {
			e.dirty = true
			e.urgent = e.urgent || urgent
		}
		e.mu.Unlock()
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
		for _, id := range p.dirtyIDs(true) {
			if err := p.save(ctx, id); err != nil {
				return err
			}
		}

		// A write the background writer started before this pass may
		// still be running, and may fail and mark its session dirty.
		p.saveMu.Lock()
		left := len(p.dirtyIDs(true))
		p.saveMu.Unlock()
		if left == 0 {
			return nil
		}
	}
}

// saveNow writes session id's state before an admin call returns, so the
// caller learns about a store failure.
func (p *Pool) saveNow(ctx context.Context, id string) error {
	if e := p.lookup(id); e != nil {
		e.mu.Lock()
		e.dirty, e.urgent = true, true
		e.mu.Unlock()
	}
	return p.save(ctx, id)
}
