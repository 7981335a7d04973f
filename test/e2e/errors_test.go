package e2e

import (
	"net/http"
	"strings"
	"testing"
)

// TestErrorsAndRouting checks that every failure on every route is an
// OpenAI error object with the right status, and the path and CORS rules.
func TestErrorsAndRouting(t *testing.T) {
	g := startGateway(t, sqliteStore)
	chat := func(body string) response { return g.do(http.MethodPost, "/v1/chat/completions", userKey, body) }
	cases := []struct {
		name        string
		res         response
		status      int
		typ, code   string
		param       string
		retryAfter  bool
		allowHeader string
	}{
		{name: "bad json", res: chat(`{"model":`), status: 400, typ: "invalid_request_error"},
		{name: "missing model", res: chat(`{"messages":[{"role":"user","content":"hi"}]}`), status: 400, typ: "invalid_request_error", param: "model"},
		{name: "missing messages", res: chat(`{"model":"grok-3"}`), status: 400, typ: "invalid_request_error", param: "messages"},
		{name: "unknown model", res: chat(`{"model":"gpt-9","messages":[{"role":"user","content":"hi"}]}`), status: 404, typ: "invalid_request_error", code: "model_not_found", param: "model"},
		{name: "n above 1", res: chat(`{"model":"grok-3","n":2,"messages":[{"role":"user","content":"hi"}]}`), status: 400, typ: "invalid_request_error", param: "n"},
		{name: "wrong type", res: chat(`{"model":"grok-3","temperature":"hot","messages":[{"role":"user","content":"hi"}]}`), status: 400, typ: "invalid_request_error", param: "temperature"},
		{name: "bad role", res: chat(`{"model":"grok-3","messages":[{"role":"wizard","content":"hi"}]}`), status: 400, typ: "invalid_request_error"},
		{name: "image model in chat", res: chat(`{"model":"grok-imagine","messages":[{"role":"user","content":"hi"}]}`), status: 400, typ: "invalid_request_error", param: "model"},
		{name: "unknown route", res: g.do(http.MethodGet, "/v1/nothing-here", userKey, nil), status: 404, typ: "invalid_request_error", code: "unknown_url"},
		{name: "wrong method", res: g.do(http.MethodGet, "/v1/chat/completions", userKey, nil), status: 405, typ: "invalid_request_error", code: "method_not_allowed", allowHeader: "POST"},
		{name: "missing key", res: g.do(http.MethodGet, "/v1/models", "", nil), status: 401, typ: "authentication_error", code: "missing_api_key"},
		{name: "invalid key", res: g.do(http.MethodGet, "/v1/models", "nope", nil), status: 401, typ: "authentication_error", code: "invalid_api_key"},
		{name: "user key on admin", res: g.do(http.MethodGet, "/admin/sessions", userKey, nil), status: 403, typ: "permission_error"},
		{name: "wrong admin method", res: g.admin(http.MethodPost, "/admin/sessions/ses_x/quarantine", nil), status: 405, typ: "invalid_request_error", code: "method_not_allowed", allowHeader: "PATCH"},
		{name: "unknown admin route", res: g.admin(http.MethodGet, "/admin/nothing", nil), status: 404, typ: "invalid_request_error"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.res.Status != c.status {
				t.Fatalf("status %d, want %d: %s", c.res.Status, c.status, c.res.Body)
			}
			e, ok := c.res.json(t)["error"].(map[string]any)
			if !ok {
				t.Fatalf("no error object: %s", c.res.Body)
			}
			for _, k := range []string{"message", "type", "param", "code"} {
				if _, ok := e[k]; !ok {
					t.Errorf("error object lacks %q: %s", k, c.res.Body)
				}
			}
			if e["type"] != c.typ {
				t.Errorf("type %v, want %s", e["type"], c.typ)
			}
			if c.code != "" && e["code"] != c.code {
				t.Errorf("code %v, want %s", e["code"], c.code)
			}
			if c.param != "" && e["param"] != c.param {
				t.Errorf("param %v, want %s", e["param"], c.param)
			}
			if msg, _ := e["message"].(string); msg == "" {
				t.Errorf("empty message")
			}
			if c.allowHeader != "" && !strings.Contains(strings.Join(c.res.Header.Values("Allow"), ","), c.allowHeader) {
				t.Errorf("Allow header %q", c.res.Header.Values("Allow"))
			}
			if c.res.Header.Get("X-Request-Id") == "" {
				t.Errorf("no X-Request-ID header")
			}
		})
	}

	t.Run("paths answer like the plain path", func(t *testing.T) {
		plain := g.do(http.MethodGet, "/v1/models", userKey, nil)
		for _, p := range []string{"/v1/models/", "//v1/models", "//v1//models/"} {
			res := g.do(http.MethodGet, p, userKey, nil)
			if res.Status != http.StatusOK || string(res.Body) != string(plain.Body) {
				t.Errorf("%s: %d %s", p, res.Status, res.Body)
			}
		}
		body := `{"model":"grok-3","messages":[{"role":"user","content":"Trailing slash."}]}`
		res := g.do(http.MethodPost, "/v1/chat/completions/", userKey, body)
		if res.Status != http.StatusOK || !strings.Contains(string(res.Body), "Trailing slash.") {
			t.Errorf("trailing slash chat: %d %s", res.Status, res.Body)
		}
	})

	t.Run("cors preflight needs no key", func(t *testing.T) {
		res := g.do(http.MethodOptions, "/v1/chat/completions", "", nil,
			"Origin", "https://app.example", "Access-Control-Request-Method", "POST",
			"Access-Control-Request-Headers", "authorization, content-type")
		if res.Status != http.StatusNoContent && res.Status != http.StatusOK {
			t.Fatalf("preflight status %d: %s", res.Status, res.Body)
		}
		if o := res.Header.Get("Access-Control-Allow-Origin"); o != "*" && o != "https://app.example" {
			t.Errorf("allow origin %q", o)
		}
		h := strings.ToLower(res.Header.Get("Access-Control-Allow-Headers"))
		if !strings.Contains(h, "authorization") || !strings.Contains(h, "content-type") {
			t.Errorf("allow headers %q", h)
		}
	})

	t.Run("request id is echoed", func(t *testing.T) {
		res := g.do(http.MethodGet, "/v1/models", userKey, nil, "X-Request-ID", "client-chosen-id-123")
		if got := res.Header.Get("X-Request-Id"); got != "client-chosen-id-123" {
			t.Errorf("X-Request-ID %q", got)
		}
	})

	t.Run("livez", func(t *testing.T) {
		if res := g.do(http.MethodGet, "/livez", "", nil); res.Status != http.StatusOK {
			t.Errorf("livez %d", res.Status)
		}
	})
}
