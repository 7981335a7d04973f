package pool

import (
	"cmp"
	"slices"
	"time"

	"github.com/grokproxy/grokproxy/internal/store"
)

// Stats sums up the pool for operators.
type Stats struct {
	// Sessions counts sessions by status, with every status present, plus
	// "resting" for healthy sessions that are cooling down.
	Sessions map[string]int `json:"sessions"`
	// Usable is the number of sessions in rotation now, as Usable counts.
	Usable    int                      `json:"usable"`
	Providers map[string]ProviderStats `json:"providers"`
	Egress    []EgressState            `json:"egress"`
}

// ProviderStats sums up the sessions of one provider.
type ProviderStats struct {
	Circuit  string `json:"circuit"`
	Sessions int    `json:"sessions"`
	Usable   int    `json:"usable"`
	InFlight int    `json:"in_flight"`

	// Requests, Successes and Failures are the sessions' lifetime counters.
	// Failures count only the calls charged to a session.
	Requests  int64 `json:"requests"`
	Successes int64 `json:"successes"`
	Failures  int64 `json:"failures"`
	// FailureRate is Failures over Successes plus Failures, 0 when none.
	FailureRate float64 `json:"failure_rate"`
	// RecentFailureRate is the mean of the sessions' failure rates over
	// their recent window, the figure that quarantines a session. Sessions
	// without charged calls are left out.
	RecentFailureRate float64 `json:"recent_failure_rate"`

	// Quota sums the known, current quota of each model over the healthy
	// sessions.
	Quota map[string]QuotaStats `json:"quota"`
}

// QuotaStats is the known quota of one model over several sessions.
type QuotaStats struct {
	Remaining int `json:"remaining"`
	Total     int `json:"total"`
	// Sessions is the number of sessions whose quota is known.
	Sessions int `json:"sessions"`
	// NextResetAt is the earliest reset among them; null when unknown.
	NextResetAt *time.Time `json:"next_reset_at"`
}

// Stats returns the pool's figures at this moment. It walks every session
// once, locking each in turn, so it is meant for the admin API, not for
// the request path.
func (p *Pool) Stats() Stats {
	now := p.now()
	r := p.roster.Load()
	st := Stats{Sessions: make(map[string]int, len(gaugeStatuses)), Providers: map[string]ProviderStats{}}
	for _, status := range gaugeStatuses {
		st.Sessions[status] = 0
	}
	for provider, c := range r.circuits {
		ps := p.providerStats(c, r.byProvider[provider], st.Sessions, now)
		st.Usable += ps.Usable
		st.Providers[provider] = ps
	}
	st.Egress = p.egressStates(now)
	return st
}

// providerStats sums up the sessions in list, whose provider's circuit is
// c, and adds them to the counts by status.
func (p *Pool) providerStats(c *circuit, list []*entry, byStatus map[string]int, now time.Time) ProviderStats {
	ps := ProviderStats{Circuit: p.circuitState(c, now), Sessions: len(list), Quota: map[string]QuotaStats{}}
	var rateSum float64
	var rated int
	for _, e := range list {
		e.mu.Lock()
		byStatus[e.s.Status]++
		if e.resting(now) {
			byStatus[statusResting]++
		}
		ps.InFlight += e.inFlight
		ps.Requests += e.s.UsageCount
		ps.Successes += e.s.SuccessCount
		ps.Failures += e.s.FailureCount
		if e.outcomes.n > 0 {
			rateSum += e.outcomes.rate()
			rated++
		}
		if p.inRotationLocked(e, now) {
			ps.Usable++
		}
		if e.s.Status == store.StatusHealthy {
			addQuota(ps.Quota, e, now)
		}
		e.mu.Unlock()
	}
	if charged := ps.Successes + ps.Failures; charged > 0 {
		ps.FailureRate = float64(ps.Failures) / float64(charged)
	}
	if rated > 0 {
		ps.RecentFailureRate = rateSum / float64(rated)
	}
	return ps
}

// addQuota adds the known, current quota of e to sum. The caller holds
// e.mu.
func addQuota(sum map[string]QuotaStats, e *entry, now time.Time) {
	for model := range e.s.Metadata.Quota {
		q, ok := e.quotaFor(model, now)
		if !ok {
			continue
		}
		qs := sum[model]
		qs.Remaining += max(0, q.Remaining)
		qs.Total += q.Total
		qs.Sessions++
		if !q.ResetAt.IsZero() && (qs.NextResetAt == nil || q.ResetAt.Before(*qs.NextResetAt)) {
			at := q.ResetAt
			qs.NextResetAt = &at
		}
		sum[model] = qs
	}
}

// inRotationLocked reports whether e is in rotation, as Usable counts.
func (p *Pool) inRotationLocked(e *entry, now time.Time) bool {
	expired := !e.s.ExpiresAt.IsZero() && !now.Before(e.s.ExpiresAt)
	return !e.removed && e.s.Status == store.StatusHealthy && !e.resting(now) && !e.unreadable &&
		!e.checkingLogin && !expired && !p.egressBlocked(e, now)
}

// egressStates returns the circuit of every route that carried a call,
// sorted by provider and route.
func (p *Pool) egressStates(now time.Time) []EgressState {
	counts := make(map[egressKey]int)
	p.roster.Load().all(func(e *entry) {
		counts[egressKey{e.s.Provider, e.egress}]++
	})

	p.mu.Lock()
	routes := make(map[egressKey]*circuit, len(p.egress))
	for k, c := range p.egress {
		if c.carried.Load() {
			routes[k] = c
		}
	}
	p.mu.Unlock()

	out := make([]EgressState, 0, len(routes))
	for k, c := range routes {
		out = append(out, EgressState{Provider: k.provider, Egress: k.name,
			State: p.circuitState(c, now), Sessions: counts[k]})
	}
	slices.SortFunc(out, func(a, b EgressState) int {
		return cmp.Or(cmp.Compare(a.Provider, b.Provider), cmp.Compare(a.Egress, b.Egress))
	})
	return out
}
