package e2e

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/grokproxy/grokproxy/internal/config"
	"github.com/grokproxy/grokproxy/internal/emulator/grokweb"
	"github.com/grokproxy/grokproxy/internal/pool"
	"github.com/grokproxy/grokproxy/internal/store"
)

// lifecycle starts a gateway whose per-session rate limit stays out of the
// way of a test's bursts.
func lifecycle(t *testing.T, opts ...gatewayOption) *gateway {
	t.Helper()
	opts = append([]gatewayOption{withConfig(func(c *config.Config) { c.SessionRateLimitPerSecond = 1000 })}, opts...)
	return startGateway(t, sqliteStore, opts...)
}

// chat sends one non-streaming chat request and returns the response.
func (g *gateway) chat(text string) response {
	g.t.Helper()
	return g.do(http.MethodPost, "/v1/chat/completions", userKey, chatBody(text, false))
}

// sessionsWith returns the sessions whose status (or "resting") is status.
func (g *gateway) sessionsWith(status string) []pool.View {
	views, _ := g.App.Pool.List(store.SessionFilter{Status: status})
	return views
}

// waitUntil polls cond until it holds, failing after a generous ceiling.
func (g *gateway) waitUntil(what string, cond func() bool) {
	g.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			g.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// assertDistinctAttempts checks that no request tried the same session
// twice.
func (g *gateway) assertDistinctAttempts() []store.Generation {
	g.t.Helper()
	gens, err := g.App.Store.Generations(context.Background(), store.GenerationFilter{Limit: 1000})
	if err != nil {
		g.t.Fatal(err)
	}
	for _, gen := range gens {
		seen := map[string]bool{}
		for _, a := range gen.Attempts {
			if seen[a.SessionID] {
				g.t.Errorf("request %s tried session %s twice: %+v", gen.RequestID, a.SessionID, gen.Attempts)
			}
			seen[a.SessionID] = true
		}
	}
	return gens
}

// TestRateLimitStorm: one account answers every chat with 429. It rests
// for the upstream's Retry-After, stays healthy, and its requests move to
// the other account. When both rest, the client gets 429 with Retry-After.
func TestRateLimitStorm(t *testing.T) {
	g := lifecycle(t)
	g.Emu.SetFault(ssoA, grokweb.Fault{Kind: grokweb.FaultRateLimited, RetryAfter: 45 * time.Second})
	start := time.Now()
	sent := 0
	for ; sent < 30 && (g.Emu.ChatCount(ssoA) == 0 || sent < 8); sent++ {
		if res := g.chat("Storm request."); res.Status != http.StatusOK {
			t.Fatalf("request %d: %d %s", sent, res.Status, res.Body)
		}
	}

	resting := g.sessionsWith("resting")
	if len(resting) != 1 {
		t.Fatalf("resting sessions = %d; want 1", len(resting))
	}
	r := resting[0]
	if r.Status != store.StatusHealthy || r.LastReason != pool.ReasonRateLimited {
		t.Errorf("rate-limited session: status %q last reason %q; want healthy, rate_limited", r.Status, r.LastReason)
	}
	if r.CooldownUntil == nil {
		t.Fatal("resting session has no cooldown_until")
	}
	if rest := r.CooldownUntil.Sub(start); rest < 44*time.Second || rest > 50*time.Second {
		t.Errorf("rest = %v; want the 45s Retry-After", rest)
	}
	// The storm hit the account once: its rest keeps later requests away.
	if n := g.Emu.ChatCount(ssoA); n != 1 {
		t.Errorf("chats sent to the rate-limited account = %d; want the 1 that got 429", n)
	}
	g.waitGenerations(int64(sent))
	retried := 0
	for _, gen := range g.assertDistinctAttempts() {
		if len(gen.Attempts) == 2 && gen.Attempts[0].Outcome == "rate_limited" && gen.Attempts[1].Outcome == "ok" {
			retried++
		}
	}
	if retried != 1 {
		t.Errorf("requests retried after a 429 = %d; want 1", retried)
	}

	// The other account joins the storm: nothing is left, so 429.
	g.Emu.SetFault(ssoB, grokweb.Fault{Kind: grokweb.FaultRateLimited, RetryAfter: 20 * time.Second})
	res := g.chat("Everyone is busy.")
	if res.Status != http.StatusTooManyRequests {
		t.Fatalf("all resting: %d %s; want 429", res.Status, res.Body)
	}
	if ra := res.Header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After = %q; want the time until a session is back", ra)
	}
	if n := len(g.sessionsWith(store.StatusHealthy)); n != 2 {
		t.Errorf("healthy sessions = %d; want 2, because a busy session is never retired", n)
	}
}

// TestAccountTurnsUnauthorized: an account whose login dies answers 401.
// The session expires only after the login check agrees; a single 401
// whose login check passes leaves it in rotation.
func TestAccountTurnsUnauthorized(t *testing.T) {
	g := lifecycle(t)
	// Probed sessions know their quota, so selection alternates between
	// the two accounts as each spends it.
	for _, v := range g.sessionsWith("") {
		if res := g.admin(http.MethodPost, "/admin/sessions/"+v.ID+"/probe", nil); res.Status != http.StatusOK {
			t.Fatalf("probe: %d %s", res.Status, res.Body)
		}
	}
	// chatUntilHit sends requests until one reaches account A, all of
	// them served by a retry when A fails.
	chatUntilHit := func(text string) {
		t.Helper()
		before := g.Emu.ChatCount(ssoA)
		for i := 0; i < 20 && g.Emu.ChatCount(ssoA) == before; i++ {
			if res := g.chat(text); res.Status != http.StatusOK {
				t.Fatalf("request %d: %d %s", i, res.Status, res.Body)
			}
		}
		if g.Emu.ChatCount(ssoA) == before {
			t.Fatal("no request reached account A")
		}
	}

	// One 401 with a live login: the check passes, nothing expires.
	g.Emu.SetFault(ssoA, grokweb.Fault{Kind: grokweb.FaultUnauthorized, Times: 1})
	chatUntilHit("Blip.")
	time.Sleep(200 * time.Millisecond) // let the login check finish
	if n := len(g.sessionsWith(store.StatusExpired)); n != 0 {
		t.Fatalf("expired sessions after a 401 with a live login = %d; want 0", n)
	}
	g.waitUntil("the login check to return the session", func() bool { return g.App.Pool.Usable("grok") == 2 })

	// The login dies: the account endpoint now reports unauthenticated.
	g.Emu.SetFault(ssoA, grokweb.Fault{Kind: grokweb.FaultUnauthorized})
	chatUntilHit("Dead login.")

	g.waitUntil("the session to expire", func() bool {
		return len(g.sessionsWith(store.StatusExpired)) == 1
	})
	v := g.sessionsWith(store.StatusExpired)[0]
	if v.LastReason == "" || v.StatusReason == "" {
		t.Errorf("expired session has no reason: %+v", v)
	}
	// Through the admin API too, with the reason and its time.
	got := g.admin(http.MethodGet, "/admin/sessions/"+v.ID, nil).json(t)
	if got["status"] != store.StatusExpired || got["status_reason"] == "" || got["last_change_at"] == nil {
		t.Errorf("admin view: %v", got)
	}
	before := g.Emu.ChatCount(ssoB)
	for range 3 {
		if res := g.chat("After expiry."); res.Status != http.StatusOK {
			t.Fatalf("after expiry: %d %s", res.Status, res.Body)
		}
	}
	if n := g.Emu.ChatCount(ssoB) - before; n != 3 {
		t.Errorf("chats on the live account = %d; want all 3", n)
	}
	g.assertDistinctAttempts()
}

// TestAntiBotRejection: 403s from anti-bot rules count against the
// outbound route, never a session. One account tripping them leaves the
// route open; every call rejected opens the route's circuit, which fails
// fast until an admin resets it or a trial passes.
func TestAntiBotRejection(t *testing.T) {
	g := lifecycle(t)
	g.Emu.SetFault(ssoA, grokweb.Fault{Kind: grokweb.FaultAntiBot})
	for i := 0; i < 30 && (g.Emu.ChatCount(ssoA) < 2 || i < 8); i++ {
		if res := g.chat("Blocked by a fingerprint."); res.Status != http.StatusOK {
			t.Fatalf("request %d: %d %s", i, res.Status, res.Body)
		}
	}
	if n := g.Emu.ChatCount(ssoA); n < 2 {
		t.Fatalf("anti-bot rejections = %d; want at least 2", n)
	}
	for _, v := range g.sessionsWith("") {
		if v.Status != store.StatusHealthy || v.FailureCount != 0 || len(v.History) != 0 {
			t.Errorf("session %s: status %q failures %d history %d; want healthy and uncharged",
				v.ID, v.Status, v.FailureCount, len(v.History))
		}
	}

	// Cloudflare challenges on both accounts: the whole direct route fails.
	g.Emu.SetFault(ssoA, grokweb.Fault{Kind: grokweb.FaultCloudflare})
	g.Emu.SetFault(ssoB, grokweb.Fault{Kind: grokweb.FaultAntiBot})
	for i := 0; i < 20 && g.App.Pool.Usable("grok") > 0; i++ {
		if res := g.chat("Route is blocked."); res.Status != http.StatusBadGateway {
			t.Fatalf("request %d while every call is rejected: %d %s; want 502", i, res.Status, res.Body)
		}
	}
	if n := g.App.Pool.Usable("grok"); n != 0 {
		t.Fatalf("usable sessions = %d; want 0 behind the open route", n)
	}
	chats := g.Emu.ChatCount(ssoA) + g.Emu.ChatCount(ssoB)
	if res := g.chat("Fail fast."); res.Status != http.StatusServiceUnavailable {
		t.Errorf("with the route's circuit open: %d %s; want 503", res.Status, res.Body)
	}
	if n := g.Emu.ChatCount(ssoA) + g.Emu.ChatCount(ssoB); n != chats {
		t.Errorf("the open route still sent %d chats upstream", n-chats)
	}
	stats := g.admin(http.MethodGet, "/admin/stats", nil).json(t)
	egress, _ := stats["egress"].([]any)
	if len(egress) != 1 || egress[0].(map[string]any)["state"] != pool.CircuitOpen {
		t.Errorf("stats egress = %v; want the direct route open", stats["egress"])
	}
	if c := stats["circuits"].(map[string]any)["grok"]; c != pool.CircuitClosed {
		t.Errorf("provider circuit = %v; want closed", c)
	}
	for _, v := range g.sessionsWith("") {
		if v.Status != store.StatusHealthy || v.FailureCount != 0 {
			t.Errorf("session %s: status %q failures %d; want healthy and uncharged", v.ID, v.Status, v.FailureCount)
		}
	}

	g.Emu.ClearFaults()
	if res := g.admin(http.MethodPost, "/admin/circuit/reset", nil); res.Status != http.StatusOK {
		t.Fatalf("reset: %d %s", res.Status, res.Body)
	}
	if res := g.chat("Route is back."); res.Status != http.StatusOK {
		t.Errorf("after reset: %d %s", res.Status, res.Body)
	}
	g.assertDistinctAttempts()
}

// TestUpstreamOutage: every call fails with 503. The provider's circuit
// opens before any session is quarantined, requests then fail fast with
// 503, and a trial after the cooldown closes it once upstream is back.
func TestUpstreamOutage(t *testing.T) {
	g := lifecycle(t, withConfig(func(c *config.Config) { c.CircuitCooldown = 700 * time.Millisecond }))
	g.Emu.SetFault(ssoA, grokweb.Fault{Kind: grokweb.FaultServerError, Status: 503})
	g.Emu.SetFault(ssoB, grokweb.Fault{Kind: grokweb.FaultServerError, Status: 500})
	for range 5 {
		res := g.chat("Outage.")
		if res.Status != http.StatusBadGateway && res.Status != http.StatusServiceUnavailable {
			t.Fatalf("during the outage: %d %s; want 502 or 503", res.Status, res.Body)
		}
	}
	if got := g.App.Pool.CircuitState("grok"); got != pool.CircuitOpen {
		t.Fatalf("circuit = %q; want open", got)
	}
	chats := g.Emu.ChatCount(ssoA) + g.Emu.ChatCount(ssoB)
	began := time.Now()
	res := g.chat("Fail fast.")
	if res.Status != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
		t.Errorf("open circuit: %d retry-after %q; want 503 with Retry-After", res.Status, res.Header.Get("Retry-After"))
	}
	if took := time.Since(began); took > time.Second {
		t.Errorf("open circuit answered in %v; want it fast", took)
	}
	if n := g.Emu.ChatCount(ssoA) + g.Emu.ChatCount(ssoB); n != chats {
		t.Errorf("the open circuit still sent %d chats upstream", n-chats)
	}
	health := g.do(http.MethodGet, "/health", "", nil)
	if !strings.Contains(string(health.Body), `"open"`) {
		t.Errorf("/health does not show the open circuit: %s", health.Body)
	}
	for _, v := range g.sessionsWith("") {
		if v.Status != store.StatusHealthy {
			t.Errorf("session %s is %q after an upstream outage; want healthy", v.ID, v.Status)
		}
	}

	// Upstream recovers; after the cooldown a trial closes the circuit.
	g.Emu.ClearFaults()
	time.Sleep(800 * time.Millisecond)
	if got := g.App.Pool.CircuitState("grok"); got != pool.CircuitHalfOpen {
		t.Errorf("circuit after the cooldown = %q; want half_open", got)
	}
	if res := g.chat("Trial."); res.Status != http.StatusOK {
		t.Fatalf("trial: %d %s", res.Status, res.Body)
	}
	if got := g.App.Pool.CircuitState("grok"); got != pool.CircuitClosed {
		t.Errorf("circuit after a passing trial = %q; want closed", got)
	}
	for range 3 {
		if res := g.chat("Recovered."); res.Status != http.StatusOK {
			t.Errorf("after recovery: %d", res.Status)
		}
	}
}

// TestFlappingAccount: one account fails every other call. One failure
// never removes it, but a failure rate over the threshold after 10 charged
// requests quarantines it; the health check's probe then returns it to
// rotation once it is stable again.
func TestFlappingAccount(t *testing.T) {
	g := lifecycle(t, withConfig(func(c *config.Config) {
		c.SessionHealthCheckInterval = 300 * time.Millisecond
	}))
	// A single failure leaves the session in rotation.
	g.Emu.SetFault(ssoA, grokweb.Fault{Kind: grokweb.FaultServerError, Times: 1})
	for range 4 {
		g.chat("One blip.")
	}
	if n := len(g.sessionsWith(store.StatusQuarantined)); n != 0 {
		t.Fatalf("quarantined after one failure = %d; want 0", n)
	}

	for i := 0; i < 80 && len(g.sessionsWith(store.StatusQuarantined)) == 0; i++ {
		// Arm one failure every other request; it waits for the
		// account's next chat.
		if i%2 == 0 {
			g.Emu.SetFault(ssoA, grokweb.Fault{Kind: grokweb.FaultServerError, Status: 502, Times: 1})
		}
		if res := g.chat("Flapping."); res.Status != http.StatusOK {
			t.Fatalf("request %d: %d %s; want every request served by a retry", i, res.Status, res.Body)
		}
	}
	q := g.sessionsWith(store.StatusQuarantined)
	if len(q) != 1 {
		t.Fatalf("quarantined sessions = %d; want the flapping one", len(q))
	}
	if !strings.HasPrefix(q[0].StatusReason, "failure rate") || q[0].LastReason != q[0].StatusReason {
		t.Errorf("status reason %q, last reason %q; want the failure rate", q[0].StatusReason, q[0].LastReason)
	}
	if got := g.App.Pool.CircuitState("grok"); got != pool.CircuitClosed {
		t.Errorf("circuit = %q; want closed, because the other account was fine", got)
	}

	metrics := g.do(http.MethodGet, "/metrics", g.AdminKey, nil)
	if !strings.Contains(string(metrics.Body), `grokproxy_session_rotations_total{reason="failure_rate"} 1`) {
		t.Errorf("/metrics does not count the quarantine: %d", metrics.Status)
	}

	// Stable again: the next health check probes it back into rotation.
	g.Emu.ClearFaults()
	g.waitUntil("the probe to restore the session", func() bool {
		v, _ := g.App.Pool.Get(q[0].ID)
		return v.Status == store.StatusHealthy
	})
	v, _ := g.App.Pool.Get(q[0].ID)
	if v.LastReason != pool.ReasonProbePassed {
		t.Errorf("last reason = %q; want %q", v.LastReason, pool.ReasonProbePassed)
	}
	g.assertDistinctAttempts()
}

// TestAdminLifecycleRoutes covers quarantine with ?reason=, activate,
// a synchronous probe and the stats.
func TestAdminLifecycleRoutes(t *testing.T) {
	g := lifecycle(t)
	id := g.sessionsWith("")[0].ID
	q := g.admin(http.MethodPatch, "/admin/sessions/"+id+"/quarantine?reason="+url.QueryEscape("manual check"), nil)
	if q.Status != http.StatusOK {
		t.Fatalf("quarantine: %d %s", q.Status, q.Body)
	}
	got := q.json(t)
	if got["id"] != id || got["status"] != store.StatusQuarantined || got["status_reason"] != "manual check" {
		t.Errorf("quarantine answer: %v", got)
	}
	stats := g.admin(http.MethodGet, "/admin/stats", nil).json(t)
	sessions := stats["sessions"].(map[string]any)
	if sessions["quarantined"] != float64(1) || sessions["healthy"] != float64(1) {
		t.Errorf("stats sessions = %v; want 1 healthy, 1 quarantined", sessions)
	}
	if _, ok := stats["providers"].(map[string]any)["grok"].(map[string]any)["failure_rate"]; !ok {
		t.Errorf("stats lack the grok failure rate: %v", stats["providers"])
	}

	p := g.admin(http.MethodPost, "/admin/sessions/"+id+"/probe", nil)
	if p.Status != http.StatusOK || p.json(t)["status"] != store.StatusHealthy || p.json(t)["last_reason"] != pool.ReasonProbePassed {
		t.Errorf("probe: %d %s; want the session healthy again", p.Status, p.Body)
	}
	if p.json(t)["last_health_check_at"] == nil {
		t.Errorf("probe did not record its time: %s", p.Body)
	}

	g.admin(http.MethodPatch, "/admin/sessions/"+id+"/quarantine", map[string]any{"reason": "body reason"})
	a := g.admin(http.MethodPatch, "/admin/sessions/"+id+"/activate", nil)
	if a.Status != http.StatusOK || a.json(t)["status"] != store.StatusHealthy {
		t.Errorf("activate: %d %s", a.Status, a.Body)
	}
	list := g.admin(http.MethodGet, "/admin/sessions?status=healthy&provider=grok&limit=1", nil).json(t)
	if data, _ := list["data"].([]any); len(data) != 1 || list["next_cursor"] == nil {
		t.Errorf("paged list: %v", list)
	}
	if bad := g.admin(http.MethodGet, "/admin/sessions?status=sleeping", nil); bad.Status != http.StatusBadRequest {
		t.Errorf("unknown status filter: %d", bad.Status)
	}
	if missing := g.admin(http.MethodPatch, "/admin/sessions/ses_missing/quarantine?reason=x", nil); missing.Status != http.StatusNotFound {
		t.Errorf("quarantine of an unknown session: %d", missing.Status)
	}
}
