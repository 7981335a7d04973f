package pool_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/grokproxy/grokproxy/internal/pool"
	"github.com/grokproxy/grokproxy/internal/store"
	"github.com/grokproxy/grokproxy/internal/upstream"
)

// run starts the health loop and stops it when the test ends.
func run(t *testing.T, h *harness) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		h.pool.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Errorf("Run did not return after its context ended")
		}
	})
}

func healthConfig() pool.Config {
	cfg := testConfig()
	cfg.HealthCheckInterval = 10 * time.Millisecond
	return cfg
}

func TestRunRestoresQuarantined(t *testing.T) {
	h := newHarness(t, healthConfig())
	v := h.add()
	if _, err := h.pool.Quarantine(context.Background(), v.ID, "suspect"); err != nil {
		t.Fatalf("quarantine: %v", err)
	}
	h.client.setProbe(upstream.Probe{Tier: "heavy", AccountID: "user-1", Quota: map[string]upstream.ProbeQuota{
		"grok-4": {Remaining: 7, Total: 20, Window: 2 * time.Hour},
	}}, nil)

	run(t, h)
	waitFor(t, "probe to restore the session", func() bool { return h.get(v.ID).Status == store.StatusHealthy })

	got := h.get(v.ID)
	if got.LastReason != pool.ReasonProbePassed {
		t.Errorf("LastReason = %q; want %q", got.LastReason, pool.ReasonProbePassed)
	}
	if got.Tier != "heavy" || got.AccountID != "user-1" {
		t.Errorf("tier %q account %q; want heavy, user-1", got.Tier, got.AccountID)
	}
	q := got.Quota["grok-4"]
	if q.Remaining != 7 || q.Total != 20 || q.WindowSeconds != 7200 || !q.CheckedAt.Equal(h.clock.Now()) {
		t.Errorf("quota = %+v; want 7 of 20 over 7200s checked now", q)
	}
	if got.LastHealthCheckAt == nil || !got.LastHealthCheckAt.Equal(h.clock.Now()) {
		t.Errorf("LastHealthCheckAt = %v; want now", got.LastHealthCheckAt)
	}
	l := h.acquire(pool.AcquireRequest{})
	if l.Credential.AccountID != "user-1" {
		t.Errorf("lease AccountID = %q; want the probed user-1", l.Credential.AccountID)
	}
	h.pool.Release(l, pool.Result{})
}

func TestRunKeepsQuarantinedOnFailedProbe(t *testing.T) {
	h := newHarness(t, healthConfig())
	v := h.add()
	if _, err := h.pool.Quarantine(context.Background(), v.ID, "suspect"); err != nil {
		t.Fatalf("quarantine: %v", err)
	}
	h.client.setProbe(upstream.Probe{}, upstreamErr(upstream.OutcomeUnavailable))

	run(t, h)
	waitFor(t, "two probes", func() bool { return h.client.probeCount() >= 2 })
	if got := h.get(v.ID).Status; got != store.StatusQuarantined {
		t.Errorf("status = %q; want quarantined while probes fail", got)
	}
}

func TestRunProbesAgedSessions(t *testing.T) {
	h := newHarness(t, healthConfig())
	v := h.add()
	h.client.setProbe(upstream.Probe{}, upstreamErr(upstream.OutcomeUnauthorized))

	run(t, h)
	time.Sleep(100 * time.Millisecond)
	if n := h.client.probeCount(); n != 0 {
		t.Fatalf("probes of a new session = %d; want 0 before MaxAge", n)
	}

	h.clock.Advance(24 * time.Hour)
	waitFor(t, "aged session to be probed and expired", func() bool { return h.get(v.ID).Status == store.StatusExpired })
	if got := h.get(v.ID).StatusReason; got == "" {
		t.Errorf("StatusReason is empty; want why the session expired")
	}
}

func TestRunExpiresPastExpiresAt(t *testing.T) {
	h := newHarness(t, healthConfig())
	v := h.add()
	// The pool never sets expires_at itself. Another writer, such as the
	// CLI, does, and the pool reads it on load.
	row, err := h.st.Session(context.Background(), v.ID)
	if err != nil {
		t.Fatalf("read session: %v", err)
	}
	if err := h.st.DeleteSession(context.Background(), v.ID); err != nil {
		t.Fatalf("delete session: %v", err)
	}
	row.ExpiresAt = h.clock.Now().Add(time.Hour)
	if err := h.st.CreateSession(context.Background(), &row); err != nil {
		t.Fatalf("recreate session: %v", err)
	}
	h.pool = h.open()
	run(t, h)

	h.clock.Advance(time.Hour)
	waitFor(t, "session to expire", func() bool { return h.get(v.ID).Status == store.StatusExpired })
	if got := h.get(v.ID).StatusReason; got != pool.ReasonLoginExpired {
		t.Errorf("StatusReason = %q; want %q", got, pool.ReasonLoginExpired)
	}
}

func TestProbeAdmin(t *testing.T) {
	h := newHarness(t, testConfig())
	v := h.add()

	h.client.setProbe(upstream.Probe{Tier: "basic"}, nil)
	got, err := h.pool.Probe(context.Background(), v.ID)
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	if got.Tier != "basic" || got.LastHealthCheckAt == nil {
		t.Errorf("after a passing probe: tier %q, checked %v; want basic, set", got.Tier, got.LastHealthCheckAt)
	}
	if secrets := h.client.secrets; len(secrets) != 1 || secrets[0] != "sso=cookie-1-secret" {
		t.Errorf("probe was not sent with the session's decrypted cookie")
	}

	h.client.setProbe(upstream.Probe{}, &upstream.Error{Outcome: upstream.OutcomeUnauthorized, Status: 401})
	got, err = h.pool.Probe(context.Background(), v.ID)
	var ue *upstream.Error
	if !errors.As(err, &ue) || ue.Outcome != upstream.OutcomeUnauthorized {
		t.Errorf("Probe error = %v; want the unauthorized *upstream.Error", err)
	}
	if got.Status != store.StatusExpired {
		t.Errorf("status after a rejected probe = %q; want expired", got.Status)
	}
	row, err := h.st.Session(context.Background(), v.ID)
	if err != nil || row.Status != store.StatusExpired {
		t.Errorf("stored status = %q, %v; want expired", row.Status, err)
	}

	if _, err := h.pool.Probe(context.Background(), "ses_unknown"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Probe unknown = %v; want ErrNotFound", err)
	}
}

func TestSessionGauges(t *testing.T) {
	h := newHarness(t, testConfig())
	a := h.add()
	h.add()
	h.add()
	if _, err := h.pool.Quarantine(context.Background(), a.ID, ""); err != nil {
		t.Fatalf("quarantine: %v", err)
	}
	h.call(pool.AcquireRequest{Exclude: []string{a.ID}}, upstreamErr(upstream.OutcomeRateLimited))
	h.flush()

	h.pool = h.open()
	want := map[string]float64{"healthy": 2, "resting": 1, "quarantined": 1, "expired": 0, "revoked": 0}
	for status, n := range want {
		if got := metricValue(t, h, "grokproxy_active_sessions", "provider", "grok", "status", status); got != n {
			t.Errorf("active_sessions{status=%q} = %v; want %v", status, got, n)
		}
	}
	for _, reason := range pool.Reasons {
		if got := metricValue(t, h, "grokproxy_session_rotations_total", "reason", reason); got != 0 {
			t.Errorf("rotations{reason=%q} on a new pool = %v; want 0", reason, got)
		}
	}
	if got := metricValue(t, h, "grokproxy_circuit_state", "provider", "grok"); got != 0 {
		t.Errorf("circuit_state = %v; want 0", got)
	}
}
