package pool

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/grokproxy/grokproxy/internal/store"
	"github.com/grokproxy/grokproxy/internal/upstream"
)

const (
	// probeConcurrency caps the probes one health-check pass runs at once.
	probeConcurrency = 4
	// maxProbesPerPass caps the probes of one pass; the sessions probed
	// longest ago go first, and the rest wait for the next pass.
	maxProbesPerPass = 64
)

// Run checks session health every HealthCheckInterval until ctx is done.
// Each pass reloads rows that other processes added, deleted or changed
// (see Reload), expires sessions whose expires_at has passed, probes
// quarantined sessions and healthy sessions that had no successful probe
// for MaxAge, updates the session gauges and saves unsaved counters.
//
// Probes read the login and quota endpoints and spend no chat quota. A
// pass probes at most maxProbesPerPass sessions, those probed longest ago
// first, and spreads their starts over half the interval, so thousands of
// sessions are probed over several passes instead of in one burst.
func (p *Pool) Run(ctx context.Context) {
	t := time.NewTicker(p.cfg.HealthCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.checkHealth(ctx)
		}
	}
}

// checkHealth runs one health-check pass.
func (p *Pool) checkHealth(ctx context.Context) {
	if err := p.Reload(ctx); err != nil && ctx.Err() == nil {
		p.log.Warn("reload sessions", "error", err)
	}

	due := p.dueForProbe(p.now())

	gap := p.cfg.HealthCheckInterval / (2 * maxProbesPerPass)
	sem := make(chan struct{}, probeConcurrency)
	var wg sync.WaitGroup
	for i, id := range due {
		if i > 0 && !sleepCtx(ctx, gap) {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			// The result is applied to the session and logged there.
			_ = p.probeSession(ctx, id)
		})
	}
	wg.Wait()

	p.refreshGauges(p.now())
	p.startWriter(true)
}

// sleepCtx waits for d and reports false when ctx ends first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// dueForProbe expires sessions past their expires_at and lists the
// sessions to probe, those probed longest ago first.
func (p *Pool) dueForProbe(now time.Time) []string {
	type due struct {
		id       string
		probedAt time.Time
	}
	var list []due
	p.roster.Load().all(func(e *entry) {
		e.mu.Lock()
		defer e.mu.Unlock()
		if p.dueLocked(e, now) {
			list = append(list, due{e.s.ID, e.probedAt})
		}
	})
	p.settleGauges(now)

	slices.SortFunc(list, func(a, b due) int { return a.probedAt.Compare(b.probedAt) })
	ids := make([]string, 0, min(len(list), maxProbesPerPass))
	for _, d := range list[:min(len(list), maxProbesPerPass)] {
		ids = append(ids, d.id)
	}
	return ids
}

// dueLocked expires e if its expires_at has passed, and otherwise reports
// whether it is due for a probe.
func (p *Pool) dueLocked(e *entry, now time.Time) bool {
	if e.removed {
		return false
	}
	inPool := e.s.Status == store.StatusHealthy || e.s.Status == store.StatusQuarantined
	if inPool && !e.s.ExpiresAt.IsZero() && !now.Before(e.s.ExpiresAt) {
		p.setStatusLocked(e, store.StatusExpired, ReasonLoginExpired, "", now)
		return false
	}
	if e.unreadable || e.checkingLogin || p.clients[e.s.Provider] == nil {
		return false
	}
	switch e.s.Status {
	case store.StatusQuarantined:
		return true
	case store.StatusHealthy:
		return !now.Before(e.lastGoodProbe().Add(p.cfg.MaxAge))
	}
	return false
}

// probeSession probes session id and applies the result. It returns the
// probe's error, if any.
func (p *Pool) probeSession(ctx context.Context, id string) error {
	e := p.lookup(id)
	if e == nil {
		return fmt.Errorf("session %q: %w", id, store.ErrNotFound)
	}
	cred, err := p.startProbe(e, id)
	if err != nil {
		return err
	}
	client := p.clients[e.s.Provider]

	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	probe, err := client.Probe(pctx, cred)
	cancel()

	now := p.now()
	e.mu.Lock()
	if !e.removed {
		p.applyProbeResultLocked(e, probe, err, now)
	}
	e.mu.Unlock()
	p.settleGauges(now)
	if err != nil {
		return fmt.Errorf("probe session %q: %w", id, err)
	}
	return nil
}

// startProbe checks that session e can be probed, notes the start of the
// probe and returns the credential to probe with.
func (p *Pool) startProbe(e *entry, id string) (upstream.Credential, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case e.removed:
		return upstream.Credential{}, fmt.Errorf("session %q: %w", id, store.ErrNotFound)
	case p.clients[e.s.Provider] == nil:
		return upstream.Credential{}, fmt.Errorf("probe session %q: no upstream client for provider %q", id, e.s.Provider)
	case e.unreadable:
		return upstream.Credential{}, fmt.Errorf("probe session %q: credential could not be decrypted; check the encryption keys", id)
	}
	e.probedAt = p.now()
	return credentialOf(e), nil
}

// applyProbeResultLocked moves e by the outcome of a probe. Only a probe
// brings a quarantined session back; an expired one needs an admin.
func (p *Pool) applyProbeResultLocked(e *entry, probe upstream.Probe, err error, now time.Time) {
	inPool := e.s.Status == store.StatusHealthy || e.s.Status == store.StatusQuarantined
	switch outcomeOf(err) {
	case upstream.OutcomeOK:
		p.applyProbeLocked(e, probe, now)
		if e.s.Status == store.StatusQuarantined {
			p.setStatusLocked(e, store.StatusHealthy, ReasonProbePassed, "", now)
		}
	case upstream.OutcomeUnauthorized:
		if inPool {
			p.setStatusLocked(e, store.StatusExpired, ReasonUnauthorized, "a probe was rejected as unauthorized", now)
		}
	case upstream.OutcomeBlocked:
		if e.s.Status == store.StatusHealthy {
			p.setStatusLocked(e, store.StatusQuarantined, ReasonBlocked, "", now)
		}
	case upstream.OutcomeRateLimited:
		if e.s.Status == store.StatusHealthy {
			p.restLocked(e, p.resetTimeLocked(e, "", err, now), ReasonRateLimited, now)
		}
	case upstream.OutcomeCanceled:
		// Shutdown, or the admin request went away: nothing was learned.
	default:
		p.log.Warn("probe failed", "session_id", e.s.ID, "upstream", e.s.Provider, "error", err)
	}
}

// applyProbeLocked records what a passing probe learned.
func (p *Pool) applyProbeLocked(e *entry, probe upstream.Probe, now time.Time) {
	e.s.LastHealthCheckAt = now
	if probe.Tier != "" {
		e.s.Metadata.Tier = probe.Tier
	}
	if probe.AccountID != "" {
		e.s.Metadata.AccountID = probe.AccountID
	}
	if len(probe.Quota) > 0 && e.s.Metadata.Quota == nil {
		e.s.Metadata.Quota = make(map[string]store.Quota, len(probe.Quota))
	}
	for model, q := range probe.Quota {
		// NOTE: the reset time is an estimate. The probe reports the
		// window's length, not its start, so the real reset may come
		// earlier than now plus the window.
		window := q.Window
		if window <= 0 {
			window = p.cfg.DefaultCooldown
		}
		e.s.Metadata.Quota[model] = store.Quota{
			Remaining:     q.Remaining,
			Total:         q.Total,
			WindowSeconds: int(q.Window / time.Second),
			ResetAt:       now.Add(window),
			CheckedAt:     now,
		}
	}
	p.markDirtyLocked(e, false)
}
