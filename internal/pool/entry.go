package pool

import (
	"time"

	"github.com/grokproxy/grokproxy/internal/secret"
	"github.com/grokproxy/grokproxy/internal/store"
)

// entry is one session in memory. Pool.mu guards every field.
type entry struct {
	// s is the stored record, kept current. Credential and ProxyURL hold
	// ciphertext.
	s     store.Session
	cred  secret.Value
	proxy secret.Value
	// unreadable is set when the credential did not decrypt; the session
	// is never selected.
	unreadable bool
	index      int    // position in Pool.byProvider[s.Provider]
	egress     string // name of the outbound route, see egressName
	loadedAt   int    // Pool.loads when the entry joined the pool

	inFlight int
	tokens   float64 // token bucket level at tokensAt
	tokensAt time.Time
	outcomes window // charged outcomes, for the failure rate

	// NOTE: the rotation count lives in memory only, so a restart gives
	// every session a fresh rotation window.
	rotationStart time.Time
	rotationCount int

	probedAt time.Time // start of the last probe, passed or not

	// checkingLogin is set while a probe confirms an unauthorized
	// response. The session is not selected meanwhile.
	checkingLogin bool
}

// state returns the part of the record that SaveSessionState writes.
func (e *entry) state() store.SessionState {
	return store.SessionState{
		Status:            e.s.Status,
		StatusReason:      e.s.StatusReason,
		CooldownUntil:     e.s.CooldownUntil,
		LastUsedAt:        e.s.LastUsedAt,
		LastHealthCheckAt: e.s.LastHealthCheckAt,
		UsageCount:        e.s.UsageCount,
		SuccessCount:      e.s.SuccessCount,
		FailureCount:      e.s.FailureCount,
		Metadata:          cloneMetadata(e.s.Metadata),
	}
}

// lastGoodProbe returns the time of the last passing probe, or the
// creation time when there was none.
func (e *entry) lastGoodProbe() time.Time {
	if e.s.LastHealthCheckAt.IsZero() {
		return e.s.CreatedAt
	}
	return e.s.LastHealthCheckAt
}

// resting reports whether the session is healthy but cooling down.
func (e *entry) resting(now time.Time) bool {
	return e.s.Status == store.StatusHealthy && e.s.CooldownUntil.After(now)
}

// weight is the session's relative share in selection.
func (e *entry) weight() float64 {
	return float64(max(1, e.s.Weight))
}

// refill tops up the token bucket for the time passed since the last call.
func (e *entry) refill(now time.Time, rate, burst float64) {
	if elapsed := now.Sub(e.tokensAt); elapsed > 0 {
		e.tokens = min(burst, e.tokens+elapsed.Seconds()*rate)
	}
	e.tokensAt = now
}

// quotaFor returns the known quota of model and whether it is current. A
// quota whose reset time has passed no longer applies.
func (e *entry) quotaFor(model string, now time.Time) (store.Quota, bool) {
	q, ok := e.s.Metadata.Quota[model]
	if !ok || (!q.ResetAt.IsZero() && !q.ResetAt.After(now)) {
		return store.Quota{}, false
	}
	return q, true
}

// quotaSpent reports whether model's quota is known to be used up until a
// reset time still ahead.
func (e *entry) quotaSpent(model string, now time.Time) bool {
	q, ok := e.s.Metadata.Quota[model]
	return ok && q.Remaining <= 0 && q.ResetAt.After(now)
}

// quotaShare is the remaining share of model's quota, 1 when unknown.
func (e *entry) quotaShare(model string, now time.Time) float64 {
	q, ok := e.quotaFor(model, now)
	if !ok || q.Total <= 0 {
		return 1
	}
	return float64(max(0, q.Remaining)) / float64(q.Total)
}

func cloneMetadata(m store.SessionMetadata) store.SessionMetadata {
	out := m
	if m.Quota != nil {
		out.Quota = make(map[string]store.Quota, len(m.Quota))
		for k, v := range m.Quota {
			out.Quota[k] = v
		}
	}
	out.History = append([]store.StatusChange(nil), m.History...)
	return out
}

// window holds the last few outcomes of a series as failed or not.
type window struct {
	failed   []bool
	next     int // index the next outcome is written to
	n        int // outcomes held, at most len(failed)
	failures int // failed outcomes held
}

func newWindow(size int) window {
	return window{failed: make([]bool, max(1, size))}
}

func (w *window) add(failed bool) {
	if w.n == len(w.failed) {
		if w.failed[w.next] {
			w.failures--
		}
	} else {
		w.n++
	}
	w.failed[w.next] = failed
	if failed {
		w.failures++
	}
	w.next = (w.next + 1) % len(w.failed)
}

// rate returns the share of failed outcomes, 0 when empty.
func (w *window) rate() float64 {
	if w.n == 0 {
		return 0
	}
	return float64(w.failures) / float64(w.n)
}

func (w *window) reset() {
	clear(w.failed)
	w.next, w.n, w.failures = 0, 0, 0
}
