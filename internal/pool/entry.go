package pool

import (
	"sync"
	"time"

	"github.com/grokproxy/grokproxy/internal/secret"
	"github.com/grokproxy/grokproxy/internal/store"
)

// entry is one session in memory.
//
// The fields above mu are set before the entry joins a roster and never
// change after, so they are read without a lock. The same holds for s.ID
// and s.Provider. mu guards every other field. Unless its comment names
// another lock, a method whose name ends in Locked and that takes an entry
// expects the caller to hold that entry's mu.
type entry struct {
	cred  secret.Value
	proxy secret.Value
	// unreadable is set when the credential did not decrypt; the session
	// is never selected.
	unreadable bool
	egress     string   // name of the outbound route, see egressName
	route      *circuit // the circuit of that route
	loadedAt   int      // Pool.loads when the entry joined the pool; guarded by Pool.mu

	mu sync.Mutex
	// s is the stored record, kept current. Credential and ProxyURL hold
	// ciphertext.
	s store.Session
	// removed is set once the entry has left the pool. Its leases may
	// still come back; their Release changes nothing.
	removed bool

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

	dirty  bool // the state has changes the store lacks
	urgent bool // among them a status change, which is saved at once
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

// capacity is the session's share of work in selection: its weight times
// the remaining share of model's quota.
func (e *entry) capacity(model string, now time.Time) float64 {
	return e.weight() * e.quotaShare(model, now)
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

// quotaShare is the remaining share of model's quota. It is 1 when the
// quota is unknown: a session not yet probed, or one whose quota window
// has rolled over since, most likely has its whole quota.
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
