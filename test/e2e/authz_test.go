package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/grokproxy/grokproxy/internal/config"
	"github.com/grokproxy/grokproxy/internal/store"
)

// outsideAddr is a documentation address outside every allowlist of the
// authorization tests; requests claim it through a trusted proxy header.
const outsideAddr = "203.0.113.9"

// principal is one kind of caller of the authorization matrix.
type principal struct {
	name   string
	key    string
	header []string
}

// madeUser is a user created through the admin API, with one live key.
type madeUser struct {
	ID, Key, KeyID string
}

func (g *gateway) makeUser(name string) madeUser {
	g.t.Helper()
	res := g.admin(http.MethodPost, "/admin/users", map[string]any{"name": name})
	if res.Status != http.StatusCreated {
		g.t.Fatalf("create user %q: %d %s", name, res.Status, res.Body)
	}
	id, _ := res.json(g.t)["id"].(string)
	res = g.admin(http.MethodPost, "/admin/users/"+id+"/keys", map[string]any{"name": "main"})
	if res.Status != http.StatusCreated {
		g.t.Fatalf("create key for %q: %d %s", name, res.Status, res.Body)
	}
	k := res.json(g.t)
	key, _ := k["key"].(string)
	keyID, _ := k["id"].(string)
	if id == "" || key == "" || keyID == "" {
		g.t.Fatalf("user or key answer lacks ids: %s", res.Body)
	}
	return madeUser{ID: id, Key: key, KeyID: keyID}
}

// TestAuthorizationMatrix calls every route as every kind of caller: no
// key, a revoked key, a user's key, another user's key, an admin key, and
// an admin key from an address outside the allowlists. Only admins reach
// /admin, and no caller outside the allowlist reaches any route.
func TestAuthorizationMatrix(t *testing.T) {
	g := startGateway(t, sqliteStore, withConfig(func(c *config.Config) {
		loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		c.IPAllowlist, c.AdminIPAllowlist, c.TrustedProxies = loopback, loopback, loopback
	}))
	alice, bob := g.makeUser("alice"), g.makeUser("bob")
	revoked := g.makeUser("mallory")
	if res := g.admin(http.MethodPost, "/admin/keys/"+revoked.KeyID+"/revoke", nil); res.Status >= 300 {
		t.Fatalf("revoke key: %d %s", res.Status, res.Body)
	}

	callers := []principal{
		{name: "no key"},
		{name: "revoked key", key: revoked.Key},
		{name: "user key", key: alice.Key},
		{name: "other user's key", key: bob.Key},
		{name: "admin key", key: g.AdminKey},
		{name: "outside allowlist", key: g.AdminKey, header: []string{"X-Forwarded-For", outsideAddr}},
	}
	// want is the expected status and error code per caller, in the order
	// above. Status 0 accepts any status but 401 and 403, which means the
	// route's own handler ran.
	type want struct {
		status int
		code   string
	}
	denied := []want{{401, "missing_api_key"}, {401, "invalid_api_key"}}
	outside := want{403, "ip_not_allowed"}
	adminOnly := append(append([]want{}, denied...), want{403, "admin_key_required"}, want{403, "admin_key_required"}, want{}, outside)
	userRoute := append(append([]want{}, denied...), want{200, ""}, want{200, ""}, want{200, ""}, outside)
	handledRoute := append(append([]want{}, denied...), want{}, want{}, want{}, outside)
	openRoute := []want{{200, ""}, {200, ""}, {200, ""}, {200, ""}, {200, ""}, outside}

	// Ids in admin paths belong to no row, so that an admin call changes
	// nothing the other callers rely on.
	const nope = "usr_does_not_exist"
	routes := []struct {
		method, path, body string
		want               []want
	}{
		{"POST", "/v1/chat/completions", chatHi, userRoute},
		{"GET", "/v1/models", "", userRoute},
		{"GET", "/v1/models/grok-3", "", userRoute},
		{"POST", "/v1/images/generations", `{"model":"nope","prompt":"x"}`, handledRoute},
		{"GET", "/v1/me/export", "", userRoute},
		{"GET", "/livez", "", openRoute},
		{"GET", "/readyz", "", openRoute},
		{"GET", "/health", "", openRoute},
		{"POST", "/admin/sessions", `{}`, adminOnly},
		{"GET", "/admin/sessions", "", adminOnly},
		{"GET", "/admin/sessions/" + nope, "", adminOnly},
		{"DELETE", "/admin/sessions/" + nope, "", adminOnly},
		{"PATCH", "/admin/sessions/" + nope + "/quarantine", `{}`, adminOnly},
		{"PATCH", "/admin/sessions/" + nope + "/activate", `{}`, adminOnly},
		{"POST", "/admin/sessions/" + nope + "/probe", "", adminOnly},
		{"GET", "/admin/stats", "", adminOnly},
		{"POST", "/admin/circuit/reset", `{}`, adminOnly},
		{"POST", "/admin/users", `{}`, adminOnly},
		{"GET", "/admin/users", "", adminOnly},
		{"GET", "/admin/users/" + alice.ID, "", adminOnly},
		{"PATCH", "/admin/users/" + nope, `{"name":"x"}`, adminOnly},
		{"DELETE", "/admin/users/" + nope, "", adminOnly},
		{"POST", "/admin/users/" + nope + "/keys", `{"name":"x"}`, adminOnly},
		{"GET", "/admin/users/" + alice.ID + "/keys", "", adminOnly},
		{"DELETE", "/admin/keys/" + nope, "", adminOnly},
		{"POST", "/admin/keys/" + nope + "/revoke", "", adminOnly},
		{"POST", "/admin/keys/" + nope + "/rotate", "", adminOnly},
		{"GET", "/admin/audit", "", adminOnly},
		{"GET", "/admin/users/" + alice.ID + "/export", "", adminOnly},
		{"DELETE", "/admin/users/" + nope + "/data", "", adminOnly},
		{"GET", "/admin/nothing-here", "", adminOnly},
	}
	for r, rt := range routes {
		for i, c := range callers {
			t.Run(rt.method+" "+rt.path+"/"+c.name, func(t *testing.T) {
				var body any
				if rt.body != "" {
					body = rt.body
				}
				header := c.header
				if c.key == revoked.Key {
					// Each route's revoked-key call comes from its own
					// address, so the failed-authentication limit per
					// address does not return 429 in place of 401.
					header = []string{"X-Forwarded-For", fmt.Sprintf("127.0.1.%d", r+1)}
				}
				res := g.do(rt.method, rt.path, c.key, body, header...)
				w := rt.want[i]
				if w.status == 0 {
					if res.Status == 401 || res.Status == 403 {
						t.Fatalf("got %d; want the route's own answer: %s", res.Status, res.Body)
					}
					return
				}
				if res.Status != w.status {
					t.Fatalf("got %d; want %d: %s", res.Status, w.status, res.Body)
				}
				if w.code != "" {
					if got := errorOf(t, res)[2]; got != w.code {
						t.Errorf("code %v; want %s", got, w.code)
					}
				}
			})
		}
	}
}

// TestUserDataStaysOwn checks that the self-service routes show and erase
// only the caller's own data: another user's prompts never appear in an
// export, and erasing one user leaves the other's rows in place.
func TestUserDataStaysOwn(t *testing.T) {
	g := startGateway(t, sqliteStore)
	alice, bob := g.makeUser("alice"), g.makeUser("bob")
	const marker = "alice-private-marker-31f7"
	res := g.do(http.MethodPost, "/v1/chat/completions", alice.Key,
		`{"model":"grok-3","messages":[{"role":"user","content":"`+marker+`"}]}`)
	if res.Status != http.StatusOK {
		t.Fatalf("alice chat: %d %s", res.Status, res.Body)
	}
	if res := g.do(http.MethodPost, "/v1/chat/completions", bob.Key, chatHi); res.Status != http.StatusOK {
		t.Fatalf("bob chat: %d %s", res.Status, res.Body)
	}
	g.waitGenerations(2)

	own := g.do(http.MethodGet, "/v1/me/export", alice.Key, nil)
	if own.Status != http.StatusOK || !strings.Contains(string(own.Body), marker) {
		t.Fatalf("alice's export lacks her prompt: %d %.300s", own.Status, own.Body)
	}
	other := g.do(http.MethodGet, "/v1/me/export", bob.Key, nil)
	if other.Status != http.StatusOK {
		t.Fatalf("bob's export: %d %s", other.Status, other.Body)
	}
	if strings.Contains(string(other.Body), marker) || strings.Contains(string(other.Body), alice.ID) {
		t.Fatalf("bob's export shows alice's data: %.300s", other.Body)
	}

	if res := g.do(http.MethodDelete, "/v1/me/data", bob.Key, nil); res.Status != http.StatusOK {
		t.Fatalf("bob erases his data: %d %s", res.Status, res.Body)
	}
	if res := g.do(http.MethodGet, "/v1/me/export", bob.Key, nil); res.Status != http.StatusUnauthorized {
		t.Errorf("bob's key after erasure: %d %s", res.Status, res.Body)
	}
	rows, err := g.App.Store.Generations(context.Background(), store.GenerationFilter{UserID: alice.ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 {
		t.Errorf("alice's rows after bob's erasure: %d; want 1", len(rows))
	}
	if res := g.do(http.MethodGet, "/v1/me/export", alice.Key, nil); res.Status != http.StatusOK {
		t.Errorf("alice's key after bob's erasure: %d %s", res.Status, res.Body)
	}
}

// TestInjectionStoredInert sends SQL metacharacters, path traversal and
// header injection through the admin and /v1 APIs, and reads rows back to
// check that they were rejected or stored as plain text.
func TestInjectionStoredInert(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind storeKind) {
		g := startGateway(t, kind)
		hostile := []string{
			`Robert'); DROP TABLE users;--`,
			`x' OR '1'='1`,
			`"; DELETE FROM api_keys; --`,
			`\'; SELECT pg_sleep(5); --`,
			"name\r\nX-Injected: 1",
			"../../etc/passwd",
			"%00%27",
		}
		before := g.admin(http.MethodGet, "/admin/users", nil)
		if before.Status != http.StatusOK {
			t.Fatalf("list users: %d %s", before.Status, before.Body)
		}
		usersBefore := len(before.json(t)["data"].([]any))

		for _, name := range hostile {
			res := g.admin(http.MethodPost, "/admin/users", map[string]any{
				"name": name, "metadata": map[string]string{"note": name},
			})
			if res.Status != http.StatusCreated {
				t.Fatalf("create user %q: %d %s", name, res.Status, res.Body)
			}
			if res.Header.Get("X-Injected") != "" {
				t.Fatalf("a header was injected from a user name")
			}
			id, _ := res.json(t)["id"].(string)
			got := g.admin(http.MethodGet, "/admin/users/"+url.PathEscape(id), nil)
			m := got.json(t)
			meta, _ := m["metadata"].(map[string]any)
			if m["name"] != strings.TrimSpace(name) || meta["note"] != name {
				t.Errorf("user read back as name %q, note %q; want %q", m["name"], meta["note"], name)
			}
			key := g.admin(http.MethodPost, "/admin/users/"+url.PathEscape(id)+"/keys", map[string]any{"name": name})
			if key.Status != http.StatusCreated || key.json(t)["name"] != name {
				t.Errorf("key named %q: %d %s", name, key.Status, key.Body)
			}
		}
		after := g.admin(http.MethodGet, "/admin/users", nil)
		if n := len(after.json(t)["data"].([]any)); n != usersBefore+len(hostile) {
			t.Fatalf("users after: %d; want %d", n, usersBefore+len(hostile))
		}

		// Hostile ids and filters find nothing and change nothing.
		for _, id := range hostile {
			res := g.admin(http.MethodGet, "/admin/users/"+url.PathEscape(id), nil)
			if res.Status != http.StatusNotFound {
				t.Errorf("user id %q: %d %s", id, res.Status, res.Body)
			}
			res = g.admin(http.MethodGet, "/admin/sessions?status="+url.QueryEscape(id), nil)
			if want := [4]any{400, "invalid_request_error", "invalid_value", "status"}; errorOf(t, res) != want {
				t.Errorf("status filter %q: %v; want %v", id, errorOf(t, res), want)
			}
			res = g.admin(http.MethodGet, "/admin/sessions?provider="+url.QueryEscape(id), nil)
			if want := [4]any{400, "invalid_request_error", "invalid_value", "provider"}; errorOf(t, res) != want {
				t.Errorf("provider filter %q: %v; want %v", id, errorOf(t, res), want)
			}
			res = g.admin(http.MethodGet, "/admin/sessions?after="+url.QueryEscape(id), nil)
			if res.Status != http.StatusOK {
				t.Errorf("after cursor %q: %d %s", id, res.Status, res.Body)
			}
			res = g.do(http.MethodGet, "/v1/models/"+url.PathEscape(id), userKey, nil)
			if res.Status != http.StatusNotFound {
				t.Errorf("model id %q: %d %s", id, res.Status, res.Body)
			}
		}
		sessions := g.admin(http.MethodGet, "/admin/sessions", nil)
		if n := len(sessions.json(t)["data"].([]any)); n != 2 {
			t.Errorf("sessions after hostile filters: %d; want 2", n)
		}
		if res := g.do(http.MethodGet, "/v1/models", userKey, nil); res.Status != http.StatusOK {
			t.Errorf("user key after hostile key names: %d %s", res.Status, res.Body)
		}
	})
}

// TestPathAndHeaderTricks checks that path traversal and encoded slashes
// never carry a user key into /admin, and that a forged request id or a
// header smuggled into a value is not echoed back.
func TestPathAndHeaderTricks(t *testing.T) {
	g := startGateway(t, sqliteStore)
	addr := strings.TrimPrefix(g.URL, "http://")
	for _, p := range []string{
		"/v1/../admin/users",
		"/v1/models/../../admin/users",
		"/v1/models/..%2f..%2fadmin%2fusers",
		"/v1/%2e%2e/admin/users",
		"/admin%2fusers",
		"//admin//users/",
		"/./admin/users",
	} {
		res := rawRequest(t, addr, "GET "+p+" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+userKey+"\r\n\r\n")
		if res.StatusCode == http.StatusOK && strings.Contains(p, "admin") {
			body := readAll(t, res)
			if strings.Contains(body, `"usr_admin"`) {
				t.Errorf("%s with a user key listed users: %s", p, body)
			}
		}
		res.Body.Close()
	}

	for _, id := range []string{"<script>", "abc%0d%0aSet-Cookie:x", strings.Repeat("a", 200), "id with space"} {
		res := g.do(http.MethodGet, "/livez", "", nil, "X-Request-ID", id)
		if got := res.Header.Get("X-Request-Id"); got == id || got == "" {
			t.Errorf("request id %q echoed as %q; want a fresh one", id, got)
		}
	}

	// A bare CR or LF inside a header value is refused by the HTTP server
	// before any handler runs.
	res := rawRequest(t, addr, "GET /livez HTTP/1.1\r\nHost: x\r\nX-Request-ID: a\rSet-Cookie: s=1\r\n\r\n")
	if res.StatusCode != http.StatusBadRequest || res.Header.Get("Set-Cookie") != "" {
		t.Errorf("bare CR in a header: %d, Set-Cookie %q", res.StatusCode, res.Header.Get("Set-Cookie"))
	}
	res.Body.Close()

	chat := g.do(http.MethodPost, "/v1/chat/completions", userKey,
		`{"model":"grok-3\r\nX-Injected: 1","messages":[{"role":"user","content":"hi"}]}`)
	if want := [4]any{404, "invalid_request_error", "model_not_found", "model"}; errorOf(t, chat) != want {
		t.Errorf("model with CRLF: %v; want %v", errorOf(t, chat), want)
	}
	if chat.Header.Get("X-Injected") != "" {
		t.Errorf("a header was injected from the model name")
	}
}

// rawRequest writes text on a new connection and reads one response.
func rawRequest(t *testing.T, addr, text string) *http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprint(c, text); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read response to %q: %v", strings.SplitN(text, "\r\n", 2)[0], err)
	}
	return res
}

func readAll(t *testing.T, res *http.Response) string {
	t.Helper()
	var b strings.Builder
	if _, err := bufio.NewReader(res.Body).WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
