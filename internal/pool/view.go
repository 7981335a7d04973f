package pool

import (
	"time"

	"github.com/grokproxy/grokproxy/internal/store"
)

// View is a session as the admin API shows it. It never holds the
// credential or the proxy URL.
type View struct {
	ID             string `json:"id"`
	Provider       string `json:"provider"`
	Label          string `json:"label"`
	Status         string `json:"status"`
	StatusReason   string `json:"status_reason"`
	Resting        bool   `json:"resting"`
	Weight         int    `json:"weight"`
	MaxConcurrency int    `json:"max_concurrency"`
	InFlight       int    `json:"in_flight"`
	HasProxy       bool   `json:"has_proxy"`

	// CooldownUntil is set while the session rests.
	CooldownUntil *time.Time `json:"cooldown_until,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
	// LastUsedAt, LastHealthCheckAt and LastChangeAt are null until the
	// first use, passing probe and status change.
	LastUsedAt        *time.Time `json:"last_used_at"`
	LastHealthCheckAt *time.Time `json:"last_health_check_at"`
	ExpiresAt         *time.Time `json:"expires_at,omitempty"`

	UsageCount   int64 `json:"usage_count"`
	SuccessCount int64 `json:"success_count"`
	FailureCount int64 `json:"failure_count"`
	// FailureRate is the share of failures among the recent charged calls
	// that decide quarantine, 0 when there were none.
	FailureRate float64 `json:"failure_rate"`

	Tier      string                 `json:"tier"`
	AccountID string                 `json:"account_id"`
	Quota     map[string]store.Quota `json:"quota"`
	History   []store.StatusChange   `json:"history"`
	// LastReason is the reason of the latest history entry.
	LastReason   string     `json:"last_reason"`
	LastChangeAt *time.Time `json:"last_change_at"`
}

// viewLocked builds the admin view of e at now. The caller holds e.mu.
func (p *Pool) viewLocked(e *entry, now time.Time) View {
	meta := cloneMetadata(e.s.Metadata)
	v := View{
		ID:                e.s.ID,
		Provider:          e.s.Provider,
		Label:             e.s.Label,
		Status:            e.s.Status,
		StatusReason:      e.s.StatusReason,
		Resting:           e.resting(now),
		Weight:            e.s.Weight,
		MaxConcurrency:    e.s.MaxConcurrency,
		InFlight:          e.inFlight,
		HasProxy:          len(e.s.ProxyURL) > 0,
		CreatedAt:         e.s.CreatedAt,
		LastUsedAt:        timeOrNil(e.s.LastUsedAt),
		LastHealthCheckAt: timeOrNil(e.s.LastHealthCheckAt),
		ExpiresAt:         timeOrNil(e.s.ExpiresAt),
		UsageCount:        e.s.UsageCount,
		SuccessCount:      e.s.SuccessCount,
		FailureCount:      e.s.FailureCount,
		FailureRate:       e.outcomes.rate(),
		Tier:              meta.Tier,
		AccountID:         meta.AccountID,
		Quota:             meta.Quota,
		History:           meta.History,
	}
	if v.Resting {
		v.CooldownUntil = timeOrNil(e.s.CooldownUntil)
	}
	if v.Quota == nil {
		v.Quota = map[string]store.Quota{}
	}
	if v.History == nil {
		v.History = []store.StatusChange{}
	}
	if n := len(v.History); n > 0 {
		v.LastReason = v.History[n-1].Reason
		v.LastChangeAt = timeOrNil(v.History[n-1].At)
	}
	return v
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
