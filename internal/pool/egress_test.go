package pool_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/grokproxy/grokproxy/internal/pool"
	"github.com/grokproxy/grokproxy/internal/secret"
	"github.com/grokproxy/grokproxy/internal/store"
	"github.com/grokproxy/grokproxy/internal/upstream"
)

// addProxied adds a grok session that goes out through proxyURL.
func (h *harness) addProxied(cookie, proxyURL string) pool.View {
	h.t.Helper()
	v, err := h.pool.Add(context.Background(), pool.AddRequest{
		Provider: store.ProviderGrok, Credential: secret.New(cookie), DedupKey: cookie,
		ProxyURL: secret.New(proxyURL),
	})
	if err != nil {
		h.t.Fatalf("add proxied session: %v", err)
	}
	return v
}

func egressState(h *harness, name string) string {
	for _, s := range h.pool.EgressStates() {
		if s.Provider == store.ProviderGrok && s.Egress == name {
			return s.State
		}
	}
	return ""
}

func TestEgressRejectionOpensRouteNotPool(t *testing.T) {
	h := newHarness(t, circuitConfig())
	direct := []string{h.add().ID, h.add().ID}
	proxied := h.addProxied("sso=proxied-secret", "http://user:pw@127.0.0.1:3128")
	antiBot := &upstream.Error{Outcome: upstream.OutcomeEgressRejected, Status: 403, Code: 7}

	// Five anti-bot rejections on the direct route: the window of 10
	// opens after half of it when most calls failed.
	for range 5 {
		l := h.acquire(pool.AcquireRequest{Exclude: []string{proxied.ID}})
		h.pool.Release(l, pool.Result{Err: antiBot})
	}

	if got := egressState(h, "direct"); got != pool.CircuitOpen {
		t.Fatalf("direct route circuit = %q; want open", got)
	}
	if got := h.pool.CircuitState(store.ProviderGrok); got != pool.CircuitClosed {
		t.Errorf("provider circuit = %q; want closed, because the upstream answered", got)
	}
	for _, id := range append(direct, proxied.ID) {
		v := h.get(id)
		if v.Status != store.StatusHealthy || v.FailureCount != 0 || v.FailureRate != 0 {
			t.Errorf("session %s: status %q failures %d rate %v; want healthy and uncharged",
				id, v.Status, v.FailureCount, v.FailureRate)
		}
	}
	if v := metricValue(t, h, "grokproxy_egress_circuit_state", "egress", "direct"); v != 2 {
		t.Errorf("grokproxy_egress_circuit_state{egress=direct} = %v; want 2 (open)", v)
	}

	// Only the session behind the proxy is selected while the direct
	// route is open.
	for range 5 {
		if id := h.call(pool.AcquireRequest{}, nil); id != proxied.ID {
			t.Fatalf("lease went to %s; want the proxied session %s", id, proxied.ID)
		}
	}
	if n := h.pool.Usable(store.ProviderGrok); n != 1 {
		t.Errorf("Usable = %d; want 1", n)
	}
	ns := h.noSession(pool.AcquireRequest{Exclude: []string{proxied.ID}})
	if ns.Resting {
		t.Errorf("NoSessionError.Resting = true; want false for a blocked route")
	}
}

func TestEgressCircuitRecovers(t *testing.T) {
	h := newHarness(t, circuitConfig())
	h.add()
	h.add()
	antiBot := upstreamErr(upstream.OutcomeEgressRejected)
	for range 5 {
		h.call(pool.AcquireRequest{}, antiBot)
	}
	if _, err := h.pool.Acquire(context.Background(), pool.AcquireRequest{Provider: store.ProviderGrok}); err == nil {
		t.Fatal("Acquire succeeded while the only route is open")
	}

	// After the cooldown one trial goes out; a second call waits for it.
	h.clock.Advance(30 * time.Second)
	if got := egressState(h, "direct"); got != pool.CircuitHalfOpen {
		t.Fatalf("route state after cooldown = %q; want half_open", got)
	}
	trial := h.acquire(pool.AcquireRequest{})
	var ns *pool.NoSessionError
	if _, err := h.pool.Acquire(context.Background(), pool.AcquireRequest{Provider: store.ProviderGrok}); !errors.As(err, &ns) {
		t.Errorf("second Acquire during the trial = %v; want a *NoSessionError", err)
	}
	h.pool.Release(trial, pool.Result{Err: antiBot})
	if got := egressState(h, "direct"); got != pool.CircuitOpen {
		t.Fatalf("route state after a rejected trial = %q; want open", got)
	}

	// A trial that the upstream answers, even with a rate limit, closes it.
	h.clock.Advance(30 * time.Second)
	h.call(pool.AcquireRequest{}, &upstream.Error{Outcome: upstream.OutcomeRateLimited, RetryAfter: time.Second})
	if got := egressState(h, "direct"); got != pool.CircuitClosed {
		t.Fatalf("route state after an answered trial = %q; want closed", got)
	}
	h.clock.Advance(time.Second)
	if n := h.pool.Usable(store.ProviderGrok); n != 2 {
		t.Errorf("Usable = %d; want 2", n)
	}
}

func TestEgressStaysClosedWhenOneAccountRejected(t *testing.T) {
	h := newHarness(t, circuitConfig())
	a := h.add()
	b := h.add()
	// One account keeps hitting anti-bot rules while the other passes:
	// half the calls fail, which is not above the 0.5 threshold.
	for range 20 {
		h.call(pool.AcquireRequest{Prefer: a.ID}, upstreamErr(upstream.OutcomeEgressRejected))
		h.call(pool.AcquireRequest{Prefer: b.ID}, nil)
	}
	if got := egressState(h, "direct"); got != pool.CircuitClosed {
		t.Errorf("route state = %q; want closed", got)
	}
	if v := h.get(a.ID); v.Status != store.StatusHealthy || v.FailureCount != 0 {
		t.Errorf("rejected session: status %q failures %d; want healthy with none charged", v.Status, v.FailureCount)
	}
}

func TestResetCircuitClosesRoutes(t *testing.T) {
	h := newHarness(t, circuitConfig())
	h.add()
	for range 5 {
		h.call(pool.AcquireRequest{}, upstreamErr(upstream.OutcomeEgressRejected))
	}
	h.pool.ResetCircuit(store.ProviderGrok)
	if got := egressState(h, "direct"); got != pool.CircuitClosed {
		t.Fatalf("route state after reset = %q; want closed", got)
	}
	h.call(pool.AcquireRequest{}, nil)
}

func TestEgressNameHidesProxyURL(t *testing.T) {
	h := newHarness(t, circuitConfig())
	h.addProxied("sso=hidden-secret", "http://user:proxy-password@127.0.0.1:3128")
	h.call(pool.AcquireRequest{}, nil)
	states := h.pool.EgressStates()
	if len(states) != 1 {
		t.Fatalf("EgressStates = %+v; want one route", states)
	}
	name := states[0].Egress
	if len(name) != len("proxy-")+12 || name[:6] != "proxy-" {
		t.Errorf("route name = %q; want proxy- and 12 hex digits", name)
	}
	if states[0].Sessions != 1 {
		t.Errorf("route sessions = %d; want 1", states[0].Sessions)
	}
}
