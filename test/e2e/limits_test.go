package e2e

import (
	"bufio"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/grokproxy/grokproxy/internal/config"
	"github.com/grokproxy/grokproxy/internal/emulator/grokweb"
)

// createUser adds a user through the admin API with the given fields and
// returns its id and the text of a new key.
func (g *gateway) createUser(fields map[string]any) (id, key string) {
	g.t.Helper()
	if _, ok := fields["name"]; !ok {
		fields["name"] = "limits-user"
	}
	res := g.admin(http.MethodPost, "/admin/users", fields)
	if res.Status != http.StatusCreated {
		g.t.Fatalf("create user: %d %s", res.Status, res.Body)
	}
	id = res.json(g.t)["id"].(string)
	res = g.admin(http.MethodPost, "/admin/users/"+id+"/keys", map[string]any{"name": "k"})
	if res.Status != http.StatusCreated {
		g.t.Fatalf("create key: %d %s", res.Status, res.Body)
	}
	return id, res.json(g.t)["key"].(string)
}

// assertError checks that res is an OpenAI error with the given status,
// type and code, and returns the error object.
func assertError(t *testing.T, res response, status int, typ, code string) map[string]any {
	t.Helper()
	if res.Status != status {
		t.Fatalf("status %d, want %d: %s", res.Status, status, res.Body)
	}
	e, ok := res.json(t)["error"].(map[string]any)
	if !ok {
		t.Fatalf("no OpenAI error object: %s", res.Body)
	}
	if e["type"] != typ || (code != "" && e["code"] != code) {
		t.Fatalf("error type %v code %v, want %s %s", e["type"], e["code"], typ, code)
	}
	return e
}

// retryAfter returns the Retry-After header as seconds, failing unless it
// is an integer from 1 to 60.
func retryAfter(t *testing.T, res response) int {
	t.Helper()
	n, err := strconv.Atoi(res.Header.Get("Retry-After"))
	if err != nil || n < 1 || n > 60 {
		t.Fatalf("Retry-After %q, want an integer from 1 to 60", res.Header.Get("Retry-After"))
	}
	return n
}

func TestUserRateLimit(t *testing.T) {
	g := startGateway(t, sqliteStore)
	_, key := g.createUser(map[string]any{"rate_limit_per_minute": 3})

	// Three back to back, a stream among them, each with the headers.
	answers := []response{
		g.do(http.MethodPost, "/v1/chat/completions", key, chatBody("one", true)),
		g.do(http.MethodPost, "/v1/chat/completions", key, chatBody("two", false)),
		g.do(http.MethodGet, "/v1/models", key, nil),
	}
	for i, res := range answers {
		if res.Status != http.StatusOK {
			t.Fatalf("request %d: %d %s", i+1, res.Status, res.Body)
		}
		if got := res.Header.Get("x-ratelimit-limit-requests"); got != "3" {
			t.Errorf("request %d: x-ratelimit-limit-requests %q, want 3", i+1, got)
		}
		if got := res.Header.Get("x-ratelimit-remaining-requests"); got != strconv.Itoa(2-i) {
			t.Errorf("request %d: x-ratelimit-remaining-requests %q, want %d", i+1, got, 2-i)
		}
		if res.Header.Get("x-ratelimit-reset-requests") == "" {
			t.Errorf("request %d: no x-ratelimit-reset-requests", i+1)
		}
	}
	if ct := answers[0].Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Errorf("first answer is %q, want a stream", ct)
	}

	res := g.do(http.MethodPost, "/v1/chat/completions", key, chatBody("four", true))
	e := assertError(t, res, http.StatusTooManyRequests, "rate_limit_error", "rate_limit_exceeded")
	retryAfter(t, res)
	if msg, _ := e["message"].(string); !strings.Contains(msg, "requests per minute") || !strings.Contains(msg, "3") {
		t.Errorf("message %q does not name the limit", msg)
	}
	if res.Header.Get("x-ratelimit-remaining-requests") != "0" {
		t.Errorf("429 carries remaining %q, want 0", res.Header.Get("x-ratelimit-remaining-requests"))
	}

	// Another user is not affected.
	_, other := g.createUser(map[string]any{"name": "other", "rate_limit_per_minute": 3})
	if res := g.do(http.MethodGet, "/v1/models", other, nil); res.Status != http.StatusOK {
		t.Errorf("another user: %d %s", res.Status, res.Body)
	}
}

// TestStreamHeadersBeforeFirstByte reads the headers of a slow stream
// before its body has ended.
func TestStreamHeadersBeforeFirstByte(t *testing.T) {
	g := startGateway(t, sqliteStore, withEmulator(func(c *grokweb.Config) { c.TokenDelay = 20 * time.Millisecond }))
	_, key := g.createUser(map[string]any{"rate_limit_per_minute": 50})
	req, _ := http.NewRequest(http.MethodPost, g.URL+"/v1/chat/completions",
		strings.NewReader(`{"model":"grok-3","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer "+key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Header.Get("x-ratelimit-remaining-requests") != "49" ||
		res.Header.Get("x-ratelimit-limit-requests") != "50" {
		t.Fatalf("stream: status %d, headers %v", res.StatusCode, res.Header)
	}
	line, err := bufio.NewReader(res.Body).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "data: ") {
		t.Fatalf("first line %q, %v", line, err)
	}
}

func TestIPAllowlists(t *testing.T) {
	local := netip.MustParsePrefix("127.0.0.1/32")
	partner := netip.MustParsePrefix("203.0.113.0/24")

	t.Run("trusted proxy", func(t *testing.T) {
		g := startGateway(t, sqliteStore, withConfig(func(c *config.Config) {
			c.IPAllowlist = []netip.Prefix{local, partner}
			c.AdminIPAllowlist = []netip.Prefix{local}
			c.TrustedProxies = []netip.Prefix{local}
		}))
		cases := []struct {
			name, path, key, xff string
			want                 int
		}{
			{"direct", "/v1/models", userKey, "", http.StatusOK},
			{"forwarded from partner", "/v1/models", userKey, "203.0.113.7", http.StatusOK},
			{"forwarded from outside", "/v1/models", userKey, "198.51.100.9", http.StatusForbidden},
			{"outside behind partner", "/v1/models", userKey, "203.0.113.7, 198.51.100.9", http.StatusForbidden},
			{"spoofed first hop ignored", "/v1/models", userKey, "198.51.100.9, 203.0.113.7", http.StatusOK},
			{"health from outside", "/health", "", "198.51.100.9", http.StatusForbidden},
			{"admin direct", "/admin/users", g.AdminKey, "", http.StatusOK},
			{"admin from partner", "/admin/users", g.AdminKey, "203.0.113.7", http.StatusForbidden},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				var hdr []string
				if c.xff != "" {
					hdr = []string{"X-Forwarded-For", c.xff}
				}
				res := g.do(http.MethodGet, c.path, c.key, nil, hdr...)
				if c.want == http.StatusForbidden {
					assertError(t, res, http.StatusForbidden, "permission_error", "ip_not_allowed")
					return
				}
				if res.Status != c.want {
					t.Fatalf("status %d, want %d: %s", res.Status, c.want, res.Body)
				}
			})
		}
	})

	t.Run("untrusted peer", func(t *testing.T) {
		g := startGateway(t, sqliteStore, withConfig(func(c *config.Config) {
			c.IPAllowlist = []netip.Prefix{partner}
		}))
		// The peer is 127.0.0.1 and not a trusted proxy, so its
		// X-Forwarded-For is not believed.
		res := g.do(http.MethodGet, "/v1/models", userKey, nil, "X-Forwarded-For", "203.0.113.7")
		assertError(t, res, http.StatusForbidden, "permission_error", "ip_not_allowed")
		res = g.do(http.MethodPost, "/v1/chat/completions", userKey, chatBody("hi", true))
		assertError(t, res, http.StatusForbidden, "permission_error", "ip_not_allowed")
	})
}

func TestAuthFailureLimitSparesValidKeys(t *testing.T) {
	g := startGateway(t, sqliteStore, withConfig(func(c *config.Config) { c.AuthFailureLimitPerMinute = 3 }))
	_, stored := g.createUser(map[string]any{})
	bad := stored[:len(stored)-1] + "x"
	if bad == stored {
		bad = stored[:len(stored)-1] + "y"
	}

	var blocked response
	for i := range 6 {
		res := g.do(http.MethodGet, "/v1/models", bad, nil)
		if res.Status == http.StatusTooManyRequests {
			blocked = res
			break
		}
		assertError(t, res, http.StatusUnauthorized, "authentication_error", "invalid_api_key")
		if i >= 3 {
			t.Fatalf("still 401 after %d failures over a limit of 3", i+1)
		}
	}
	if blocked.Status == 0 {
		t.Fatal("the address was never blocked")
	}
	assertError(t, blocked, http.StatusTooManyRequests, "rate_limit_error", "too_many_auth_failures")
	retryAfter(t, blocked)

	// The same address with valid keys, stored and static, still gets in.
	for _, key := range []string{stored, userKey} {
		if res := g.do(http.MethodGet, "/v1/models", key, nil); res.Status != http.StatusOK {
			t.Errorf("valid key refused from a blocked address: %d %s", res.Status, res.Body)
		}
	}
	res := g.do(http.MethodPost, "/v1/chat/completions", stored, chatBody("still here", false))
	if res.Status != http.StatusOK {
		t.Errorf("chat with a valid key from a blocked address: %d %s", res.Status, res.Body)
	}
}

func TestUserPolicies(t *testing.T) {
	g := startGateway(t, sqliteStore, withEmulator(func(c *grokweb.Config) { c.TokenDelay = 25 * time.Millisecond }))

	t.Run("model allowlist", func(t *testing.T) {
		_, key := g.createUser(map[string]any{"models": []string{"grok-3"}})
		if res := g.do(http.MethodPost, "/v1/chat/completions", key, chatBody("hi", false)); res.Status != http.StatusOK {
			t.Fatalf("allowed model: %d %s", res.Status, res.Body)
		}
		body := chatBody("hi", false)
		body["model"] = "grok-4"
		res := g.do(http.MethodPost, "/v1/chat/completions", key, body)
		assertError(t, res, http.StatusNotFound, "invalid_request_error", "model_not_found")
	})

	t.Run("expiry", func(t *testing.T) {
		id, key := g.createUser(map[string]any{})
		if res := g.do(http.MethodGet, "/v1/models", key, nil); res.Status != http.StatusOK {
			t.Fatalf("before expiry: %d %s", res.Status, res.Body)
		}
		past := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
		if res := g.admin(http.MethodPatch, "/admin/users/"+id, map[string]any{"expires_at": past}); res.Status != http.StatusOK {
			t.Fatalf("set expiry: %d %s", res.Status, res.Body)
		}
		res := g.do(http.MethodGet, "/v1/models", key, nil)
		assertError(t, res, http.StatusUnauthorized, "authentication_error", "inactive_user")

		if res := g.admin(http.MethodPatch, "/admin/users/"+id, map[string]any{"expires_at": nil}); res.Status != http.StatusOK {
			t.Fatalf("clear expiry: %d %s", res.Status, res.Body)
		}
		if res := g.do(http.MethodGet, "/v1/models", key, nil); res.Status != http.StatusOK {
			t.Errorf("after clearing the expiry: %d %s", res.Status, res.Body)
		}
	})

	t.Run("inactive", func(t *testing.T) {
		id, key := g.createUser(map[string]any{})
		g.admin(http.MethodPatch, "/admin/users/"+id, map[string]any{"active": false})
		res := g.do(http.MethodGet, "/v1/models", key, nil)
		assertError(t, res, http.StatusUnauthorized, "authentication_error", "inactive_user")
	})

	t.Run("concurrency cap", func(t *testing.T) {
		_, key := g.createUser(map[string]any{"max_concurrent_per_key": 1})
		req, _ := http.NewRequest(http.MethodPost, g.URL+"/v1/chat/completions",
			strings.NewReader(`{"model":"grok-3","stream":true,"messages":[{"role":"user","content":"slow"}]}`))
		req.Header.Set("Authorization", "Bearer "+key)
		slow, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer slow.Body.Close()
		if slow.StatusCode != http.StatusOK {
			t.Fatalf("first stream: %d", slow.StatusCode)
		}

		res := g.do(http.MethodGet, "/v1/models", key, nil)
		e := assertError(t, res, http.StatusTooManyRequests, "rate_limit_error", "concurrency_limit_exceeded")
		retryAfter(t, res)
		if msg, _ := e["message"].(string); !strings.Contains(msg, "1 request") {
			t.Errorf("message %q does not name the cap", msg)
		}

		// Once the stream ends the slot is free again.
		sc := bufio.NewScanner(slow.Body)
		for sc.Scan() {
		}
		slow.Body.Close()
		deadline := time.Now().Add(5 * time.Second)
		for {
			res := g.do(http.MethodGet, "/v1/models", key, nil)
			if res.Status == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("slot not freed after the stream ended: %d %s", res.Status, res.Body)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// TestRequestTimeoutEndsSlowUpstream sets REQUEST_TIMEOUT below the time
// the upstream takes to respond. The client gets a 504 in OpenAI's format
// instead of the completion, and the request is audited.
func TestRequestTimeoutEndsSlowUpstream(t *testing.T) {
	g := startGateway(t, sqliteStore,
		withConfig(func(c *config.Config) { c.RequestTimeout = 300 * time.Millisecond; c.MaxAttempts = 1 }),
		withEmulator(func(c *grokweb.Config) { c.FirstByteDelay = 3 * time.Second }))
	res := g.do(http.MethodPost, "/v1/chat/completions", userKey, chatBody("hi", false))
	if res.Status != http.StatusGatewayTimeout {
		t.Fatalf("status %d %s; want 504", res.Status, res.Body)
	}
	if !strings.Contains(string(res.Body), `"code":"upstream_timeout"`) {
		t.Errorf("body %s; want the code upstream_timeout", res.Body)
	}
	g.waitGenerations(1)
}
