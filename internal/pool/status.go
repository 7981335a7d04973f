package pool

import (
	"context"
	"log/slog"
	"time"

	"github.com/grokproxy/grokproxy/internal/store"
)

// Reasons for a status change. They label
// grokproxy_session_rotations_total, so the set is closed.
const (
	ReasonRateLimited       = "rate_limited"       // rests until the upstream reset time
	ReasonRotationThreshold = "rotation_threshold" // rests until the rotation window ends
	ReasonUnauthorized      = "unauthorized"       // a probe confirmed the login is dead
	ReasonLoginExpired      = "login_expired"      // the session's expires_at passed
	ReasonBlocked           = "blocked"            // upstream marked the account blocked
	ReasonFailureRate       = "failure_rate"       // too many failures in the window
	ReasonLoginCheckFailed  = "login_check_failed" // the check after a 401 could not decide
	ReasonProbePassed       = "probe_passed"       // a quarantined session passed a probe
	ReasonAdminQuarantine   = "admin_quarantine"
	ReasonAdminActivate     = "admin_activate"
)

// Reasons lists every status-change reason, for metrics that initialise
// their labels.
var Reasons = []string{
	ReasonRateLimited, ReasonRotationThreshold, ReasonUnauthorized, ReasonLoginExpired,
	ReasonBlocked, ReasonFailureRate, ReasonLoginCheckFailed, ReasonProbePassed,
	ReasonAdminQuarantine, ReasonAdminActivate,
}

// statusResting is the To of a history entry for a cool-down; the session
// stays healthy.
const statusResting = "resting"

// setStatusLocked moves e to status to. reason labels the metric; detail,
// when set, is the status reason shown to operators in its place. The
// caller calls settleGauges after it lets go of e.
func (p *Pool) setStatusLocked(e *entry, to, reason, detail string, now time.Time) {
	if detail == "" {
		detail = reason
	}
	from := e.s.Status
	e.s.Status = to
	e.s.StatusReason = detail
	if to == store.StatusHealthy {
		e.s.CooldownUntil = time.Time{}
	}
	// A session leaving or entering rotation starts its failure rate anew,
	// so old failures cannot quarantine it right after activation.
	e.outcomes.reset()
	p.recordChangeLocked(e, from, to, reason, detail, now)
	// The gauges walk every entry, so they are refreshed once the
	// caller lets go of e (see settleGauges).
	p.gaugesStale.Store(true)
}

// restLocked takes e out of rotation until until. A session already
// resting only has its rest extended, so a burst of 429s from requests in
// flight records one change.
func (p *Pool) restLocked(e *entry, until time.Time, reason string, now time.Time) {
	if !until.After(e.s.CooldownUntil) {
		return
	}
	wasResting := e.resting(now)
	e.s.CooldownUntil = until
	if wasResting {
		p.markDirtyLocked(e, true)
		return
	}
	p.recordChangeLocked(e, e.s.Status, statusResting, reason, reason, now)
}

// recordChangeLocked appends a change to e's history, logs it, counts it
// and schedules the save.
func (p *Pool) recordChangeLocked(e *entry, from, to, reason, detail string, now time.Time) {
	h := append(e.s.Metadata.History, store.StatusChange{At: now, From: from, To: to, Reason: detail})
	if len(h) > store.MaxHistory {
		h = append([]store.StatusChange(nil), h[len(h)-store.MaxHistory:]...)
	}
	e.s.Metadata.History = h
	p.metrics.rotations.WithLabelValues(reason).Inc()
	p.markDirtyLocked(e, true)

	level := slog.LevelInfo
	if to != store.StatusHealthy {
		level = slog.LevelWarn
	}
	attrs := []slog.Attr{
		slog.String("session_id", e.s.ID), slog.String("upstream", e.s.Provider),
		slog.String("from", from), slog.String("status", to), slog.String("reason", detail),
	}
	if to == statusResting {
		attrs = append(attrs, slog.Time("until", e.s.CooldownUntil))
	}
	p.log.LogAttrs(context.Background(), level, "session status changed", attrs...)
}
