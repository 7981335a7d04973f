package pool_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/grokproxy/grokproxy/internal/keyring"
	"github.com/grokproxy/grokproxy/internal/pool"
	"github.com/grokproxy/grokproxy/internal/secret"
	"github.com/grokproxy/grokproxy/internal/store"
	"github.com/grokproxy/grokproxy/internal/upstream"
)

const (
	testCookie = "sso=eyJhbGciOiJIUzI1NiJ9.cookie-text; sso-rw=eyJhbGciOiJIUzI1NiJ9.cookie-text"
	testProxy  = "http://user:proxy-password@127.0.0.1:3128"
)

func addCookie(t *testing.T, h *harness) pool.View {
	t.Helper()
	v, err := h.pool.Add(context.Background(), pool.AddRequest{
		Provider:   store.ProviderGrok,
		Credential: secret.New(testCookie),
		DedupKey:   "eyJhbGciOiJIUzI1NiJ9.cookie-text",
		Label:      "main account",
		ProxyURL:   secret.New(testProxy),
		Weight:     2,
	})
	if err != nil {
		t.Fatalf("add session: %v", err)
	}
	return v
}

func TestAddView(t *testing.T) {
	h := newHarness(t, testConfig())
	v := addCookie(t, h)

	if len(v.ID) != len("ses_")+24 || v.ID[:4] != "ses_" {
		t.Errorf("ID = %q; want ses_ and 24 hex digits", v.ID)
	}
	if v.Status != store.StatusHealthy || v.Label != "main account" || v.Weight != 2 || !v.HasProxy {
		t.Errorf("view = %+v; want a healthy weight-2 session labelled main account with a proxy", v)
	}
	if !v.CreatedAt.Equal(h.clock.Now()) {
		t.Errorf("CreatedAt = %v; want %v", v.CreatedAt, h.clock.Now())
	}
	if n := h.pool.Usable(store.ProviderGrok); n != 1 {
		t.Errorf("Usable = %d; want 1", n)
	}

	l := h.acquire(pool.AcquireRequest{})
	if l.Credential.Secret.Reveal() != testCookie || l.Credential.ProxyURL.Reveal() != testProxy {
		t.Errorf("lease credential does not match what was added")
	}
	if l.Credential.SessionID != v.ID || l.SessionID != v.ID || l.Provider != store.ProviderGrok {
		t.Errorf("lease = %s/%s; want %s/grok", l.SessionID, l.Provider, v.ID)
	}
}

func TestAddDuplicate(t *testing.T) {
	h := newHarness(t, testConfig())
	addCookie(t, h)

	// Same login with different cookie text around it.
	_, err := h.pool.Add(context.Background(), pool.AddRequest{
		Provider:   store.ProviderGrok,
		Credential: secret.New("sso=eyJhbGciOiJIUzI1NiJ9.cookie-text"),
		DedupKey:   "eyJhbGciOiJIUzI1NiJ9.cookie-text",
	})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second Add = %v; want ErrConflict", err)
	}
	if views, _ := h.pool.List(store.SessionFilter{}); len(views) != 1 {
		t.Errorf("pool holds %d sessions; want 1", len(views))
	}
}

func TestAddInvalid(t *testing.T) {
	h := newHarness(t, testConfig())
	tests := map[string]pool.AddRequest{
		"no provider":       {Credential: secret.New("sso=x")},
		"no credential":     {Provider: store.ProviderGrok},
		"negative weight":   {Provider: store.ProviderGrok, Credential: secret.New("sso=x"), Weight: -1},
		"negative cap":      {Provider: store.ProviderGrok, Credential: secret.New("sso=x"), MaxConcurrency: -1},
		"provider unserved": {Provider: "other", Credential: secret.New("sso=x")},
	}
	for name, req := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := h.pool.Add(context.Background(), req); err == nil {
				t.Errorf("Add succeeded; want an error")
			}
		})
	}
}

func TestCredentialEncryptedAtRest(t *testing.T) {
	h := newHarness(t, testConfig())
	v := addCookie(t, h)

	row, err := h.st.Session(context.Background(), v.ID)
	if err != nil {
		t.Fatalf("read session: %v", err)
	}
	if bytes.Contains(row.Credential, []byte("cookie-text")) || bytes.Contains(row.ProxyURL, []byte("proxy-password")) {
		t.Fatalf("stored row holds plaintext")
	}
	cred, err := h.kr.Decrypt(row.Credential, keyring.Binding{Table: "sessions", Column: "credential", RowID: v.ID})
	if err != nil || string(cred) != testCookie {
		t.Errorf("decrypt stored credential = %v; want the cookie", err)
	}
	proxy, err := h.kr.Decrypt(row.ProxyURL, keyring.Binding{Table: "sessions", Column: "proxy_url", RowID: v.ID})
	if err != nil || string(proxy) != testProxy {
		t.Errorf("decrypt stored proxy URL = %v; want the proxy URL", err)
	}
	if len(row.CredentialHash) != 64 {
		t.Errorf("credential hash = %q; want 64 hex digits", row.CredentialHash)
	}
}

func TestViewJSONHidesSecrets(t *testing.T) {
	h := newHarness(t, testConfig())
	v := addCookie(t, h)
	h.call(pool.AcquireRequest{}, upstreamErr(upstream.OutcomeRateLimited))

	views, _ := h.pool.List(store.SessionFilter{})
	got, _ := h.pool.Get(v.ID)
	for _, body := range []any{views, got} {
		out, err := json.Marshal(body)
		if err != nil {
			t.Fatalf("marshal view: %v", err)
		}
		for _, leak := range []string{"cookie-text", "sso=", "proxy-password", "3128"} {
			if bytes.Contains(out, []byte(leak)) {
				t.Errorf("view JSON contains %q: %s", leak, out)
			}
		}
		for _, key := range []string{`"status":"healthy"`, `"resting":true`, `"cooldown_until":`, `"last_reason":"rate_limited"`} {
			if !bytes.Contains(out, []byte(key)) {
				t.Errorf("view JSON lacks %s: %s", key, out)
			}
		}
	}
}

func TestStateSurvivesReload(t *testing.T) {
	h := newHarness(t, testConfig())
	rested, quarantined, used := h.add(), h.add(), addCookie(t, h)
	ctx := context.Background()

	h.call(pool.AcquireRequest{Prefer: used.ID}, nil)
	h.call(pool.AcquireRequest{Prefer: used.ID}, upstreamErr(upstream.OutcomeBrokenStream))
	h.call(pool.AcquireRequest{Prefer: rested.ID}, &upstream.Error{Outcome: upstream.OutcomeRateLimited, RetryAfter: time.Hour})
	if _, err := h.pool.Quarantine(ctx, quarantined.ID, "operator check"); err != nil {
		t.Fatalf("quarantine: %v", err)
	}
	h.flush()

	p := h.open()
	got, ok := p.Get(rested.ID)
	if !ok || !got.Resting || got.CooldownUntil == nil || !got.CooldownUntil.Equal(h.clock.Now().Add(time.Hour)) {
		t.Errorf("rested session after reload = %+v; want resting for 1h", got)
	}
	got, _ = p.Get(quarantined.ID)
	if got.Status != store.StatusQuarantined || got.StatusReason != "operator check" || len(got.History) != 1 {
		t.Errorf("quarantined session after reload = %q (%q), %d history entries; want quarantined (operator check), 1",
			got.Status, got.StatusReason, len(got.History))
	}
	got, _ = p.Get(used.ID)
	if got.UsageCount != 2 || got.SuccessCount != 1 || got.FailureCount != 1 || got.LastUsedAt == nil {
		t.Errorf("used session after reload: usage %d, successes %d, failures %d, last used %v; want 2, 1, 1, set",
			got.UsageCount, got.SuccessCount, got.FailureCount, got.LastUsedAt)
	}

	l, err := p.Acquire(ctx, pool.AcquireRequest{Provider: store.ProviderGrok})
	if err != nil {
		t.Fatalf("acquire after reload: %v", err)
	}
	if l.SessionID != used.ID || l.Credential.Secret.Reveal() != testCookie {
		t.Errorf("lease after reload = %s; want %s with its decrypted cookie", l.SessionID, used.ID)
	}
	p.Release(l, pool.Result{})
}

func TestQuarantineAndActivate(t *testing.T) {
	h := newHarness(t, testConfig())
	v := h.add()
	ctx := context.Background()

	q, err := h.pool.Quarantine(ctx, v.ID, "")
	if err != nil {
		t.Fatalf("quarantine: %v", err)
	}
	if q.Status != store.StatusQuarantined || q.StatusReason != pool.ReasonAdminQuarantine {
		t.Errorf("after Quarantine: %q (%q); want quarantined (admin_quarantine)", q.Status, q.StatusReason)
	}
	h.noSession(pool.AcquireRequest{})

	a, err := h.pool.Activate(ctx, v.ID)
	if err != nil {
		t.Fatalf("activate: %v", err)
	}
	if a.Status != store.StatusHealthy || a.LastReason != pool.ReasonAdminActivate || len(a.History) != 2 {
		t.Errorf("after Activate: %q, last reason %q, %d history entries; want healthy, admin_activate, 2",
			a.Status, a.LastReason, len(a.History))
	}
	h.call(pool.AcquireRequest{}, nil)

	row, err := h.st.Session(ctx, v.ID)
	if err != nil || row.Status != store.StatusHealthy || len(row.Metadata.History) != 2 {
		t.Errorf("stored row = %q with %d history entries, %v; want healthy with 2", row.Status, len(row.Metadata.History), err)
	}

	if _, err := h.pool.Activate(ctx, "ses_unknown"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Activate unknown = %v; want ErrNotFound", err)
	}
}

func TestHistoryIsCapped(t *testing.T) {
	h := newHarness(t, testConfig())
	v := h.add()
	ctx := context.Background()
	for range store.MaxHistory {
		if _, err := h.pool.Quarantine(ctx, v.ID, "flap"); err != nil {
			t.Fatalf("quarantine: %v", err)
		}
		if _, err := h.pool.Activate(ctx, v.ID); err != nil {
			t.Fatalf("activate: %v", err)
		}
	}
	got := h.get(v.ID)
	if len(got.History) != store.MaxHistory {
		t.Errorf("history holds %d entries; want %d", len(got.History), store.MaxHistory)
	}
	if last := got.History[len(got.History)-1]; last.To != store.StatusHealthy || last.From != store.StatusQuarantined {
		t.Errorf("last entry = %+v; want quarantined to healthy", last)
	}
}

func TestRemove(t *testing.T) {
	h := newHarness(t, testConfig())
	v := h.add()
	ctx := context.Background()

	if err := h.pool.Remove(ctx, v.ID); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if _, ok := h.pool.Get(v.ID); ok {
		t.Errorf("Get finds a removed session")
	}
	if _, err := h.st.Session(ctx, v.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("store Session = %v; want ErrNotFound", err)
	}
	if err := h.pool.Remove(ctx, v.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second Remove = %v; want ErrNotFound", err)
	}
	h.noSession(pool.AcquireRequest{})
}

func TestListPagesAndFilters(t *testing.T) {
	h := newHarness(t, testConfig())
	var ids []string
	for range 5 {
		ids = append(ids, h.add().ID)
	}
	if _, err := h.pool.Quarantine(context.Background(), ids[0], "check"); err != nil {
		t.Fatalf("quarantine: %v", err)
	}
	h.call(pool.AcquireRequest{Prefer: ids[1]}, upstreamErr(upstream.OutcomeRateLimited))

	var seen []string
	after := ""
	for range 5 {
		page, next := h.pool.List(store.SessionFilter{After: after, Limit: 2})
		for _, v := range page {
			seen = append(seen, v.ID)
		}
		if next == "" {
			break
		}
		after = next
	}
	if len(seen) != 5 {
		t.Fatalf("pages returned %d sessions; want 5", len(seen))
	}
	for i := 1; i < len(seen); i++ {
		if seen[i-1] >= seen[i] {
			t.Errorf("ids out of order: %q before %q", seen[i-1], seen[i])
		}
	}

	if q, _ := h.pool.List(store.SessionFilter{Status: store.StatusQuarantined}); len(q) != 1 || q[0].ID != ids[0] {
		t.Errorf("quarantined filter returned %d sessions; want %s only", len(q), ids[0])
	}
	if r, _ := h.pool.List(store.SessionFilter{Status: "resting"}); len(r) != 1 || r[0].ID != ids[1] {
		t.Errorf("resting filter returned %d sessions; want %s only", len(r), ids[1])
	}
	if x, _ := h.pool.List(store.SessionFilter{Provider: store.ProviderXAI}); len(x) != 0 {
		t.Errorf("xai filter returned %d sessions; want 0", len(x))
	}

	counts := h.pool.Counts()
	want := map[string]int{"healthy": 4, "quarantined": 1, "resting": 1, "expired": 0, "revoked": 0}
	for status, n := range want {
		if counts[status] != n {
			t.Errorf("Counts[%q] = %d; want %d", status, counts[status], n)
		}
	}
	if n := h.pool.Usable(store.ProviderGrok); n != 3 {
		t.Errorf("Usable = %d; want 3", n)
	}
}
