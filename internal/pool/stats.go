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
// once under the pool's lock, so it is meant for the admin API, not for
// the request path.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	st := Stats{Sessions: make(map[string]int, len(gaugeStatuses)), Providers: map[string]ProviderStats{}}
	for _, status := range gaugeStatuses {
		st.Sessions[status] = 0
	}
	for provider, list := range p.byProvider {
		ps := p.providerStatsLocked(provider, list, now)
		st.Usable += ps.Usable
		st.Providers[provider] = ps
		for _, e := range list {
			st.Sessions[e.s.Status]++
			if e.resting(now) {
				st.Sessions[statusResting]++
			}
		}
	}
	for provider := range p.circuits {
		if _, ok := st.Providers[provider]; !ok {
			st.Providers[provider] = ProviderStats{Circuit: p.circuitStateLocked(p.circuits[provider], now),
				Quota: map[string]QuotaStats{}}
		}
	}
	st.Egress = p.egressStatesLocked(now)
	return st
}

func (p *Pool) providerStatsLocked(provider string, list []*entry, now time.Time) ProviderStats {
	ps := ProviderStats{Circuit: CircuitClosed, Sessions: len(list), Quota: map[string]QuotaStats{}}
	if c, ok := p.circuits[provider]; ok {
		ps.Circuit = p.circuitStateLocked(c, now)
	}
	var rateSum float64
	var rated int
	for _, e := range list {
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
	}
	if charged := ps.Successes + ps.Failures; charged > 0 {
		ps.FailureRate = float64(ps.Failures) / float64(charged)
	}
	if rated > 0 {
		ps.RecentFailureRate = rateSum / float64(rated)
	}
	return ps
}

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
	return e.s.Status == store.StatusHealthy && !e.resting(now) && !e.unreadable && !e.checkingLogin &&
		!expired && !p.egressBlockedLocked(e, now)
}

func (p *Pool) egressStatesLocked(now time.Time) []EgressState {
	counts := make(map[egressKey]int)
	for _, e := range p.entries {
		counts[egressKey{e.s.Provider, e.egress}]++
	}
	out := make([]EgressState, 0, len(p.egress))
	for k, c := range p.egress {
		out = append(out, EgressState{Provider: k.provider, Egress: k.name,
			State: p.circuitStateLocked(c, now), Sessions: counts[k]})
	}
	slices.SortFunc(out, func(a, b EgressState) int {
		return cmp.Or(cmp.Compare(a.Provider, b.Provider), cmp.Compare(a.Egress, b.Egress))
	})
	return out
}
