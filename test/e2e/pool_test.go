package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/grokproxy/grokproxy/internal/emulator/grokweb"
	"github.com/grokproxy/grokproxy/internal/store"
)

func chatBody(text string, stream bool) map[string]any {
	return map[string]any{"model": "grok-3", "stream": stream,
		"messages": []map[string]any{{"role": "user", "content": text}}}
}

// TestAdminSessions covers adding, listing, duplicates and deletion, and
// that no answer ever carries a cookie.
func TestAdminSessions(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind storeKind) {
		g := startGateway(t, kind)
		dup := g.admin(http.MethodPost, "/admin/sessions", map[string]any{"cookie_text": "sso=" + ssoA + "; other=1", "provider": "grok"})
		if dup.Status != http.StatusConflict {
			t.Errorf("duplicate cookie: %d %s", dup.Status, dup.Body)
		}
		bare := g.admin(http.MethodPost, "/admin/sessions", map[string]any{"cookie_text": ssoB})
		if bare.Status != http.StatusConflict {
			t.Errorf("duplicate as bare sso value: %d %s", bare.Status, bare.Body)
		}
		empty := g.admin(http.MethodPost, "/admin/sessions", map[string]any{"cookie_text": "cf_clearance=abc; theme=dark"})
		if empty.Status != http.StatusBadRequest {
			t.Errorf("cookie without sso: %d %s", empty.Status, empty.Body)
		}
		third := "sso-charlie-5a4b3c2d1e0f"
		add := g.admin(http.MethodPost, "/admin/sessions", map[string]any{"cookie_text": "sso=" + third, "label": "charlie"})
		if add.Status != http.StatusCreated {
			t.Fatalf("add: %d %s", add.Status, add.Body)
		}
		id, _ := add.json(t)["id"].(string)
		if id == "" {
			t.Fatalf("no id: %s", add.Body)
		}
		list := g.admin(http.MethodGet, "/admin/sessions", nil)
		data, _ := list.json(t)["data"].([]any)
		if list.Status != http.StatusOK || len(data) != 3 {
			t.Fatalf("list: %d %s", list.Status, list.Body)
		}
		got := g.admin(http.MethodGet, "/admin/sessions/"+id, nil)
		if got.Status != http.StatusOK || got.json(t)["label"] != "charlie" || got.json(t)["status"] != "healthy" {
			t.Errorf("get: %d %s", got.Status, got.Body)
		}
		for _, r := range []response{add, list, got, dup} {
			for _, s := range []string{ssoA, ssoB, third} {
				if strings.Contains(string(r.Body), s) {
					t.Errorf("an admin answer contains a cookie")
				}
			}
		}
		// The cookie is encrypted at rest.
		row, err := g.App.Store.Session(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(row.Credential), third) || len(row.Credential) == 0 {
			t.Errorf("credential is not encrypted at rest")
		}
		if del := g.admin(http.MethodDelete, "/admin/sessions/"+id, nil); del.Status != http.StatusOK {
			t.Errorf("delete: %d %s", del.Status, del.Body)
		}
		if gone := g.admin(http.MethodGet, "/admin/sessions/"+id, nil); gone.Status != http.StatusNotFound {
			t.Errorf("after delete: %d %s", gone.Status, gone.Body)
		}
		if del := g.admin(http.MethodDelete, "/admin/sessions/"+id, nil); del.Status != http.StatusNotFound {
			t.Errorf("second delete: %d %s", del.Status, del.Body)
		}
	})
}

// TestFailover checks that failures before the first byte are retried on
// another session and that a cut after it ends the stream with an error.
func TestFailover(t *testing.T) {
	g := startGateway(t, sqliteStore)

	t.Run("server error is retried on the other session", func(t *testing.T) {
		g.Emu.SetFault(ssoA, grokweb.Fault{Kind: grokweb.FaultServerError, Status: 503})
		defer g.Emu.ClearFaults()
		for i := 0; i < 6; i++ {
			res := g.do(http.MethodPost, "/v1/chat/completions", userKey, chatBody("Retry me please.", false))
			if res.Status != http.StatusOK || !strings.Contains(string(res.Body), "Retry me please.") {
				t.Fatalf("request %d: %d %s", i, res.Status, res.Body)
			}
		}
		g.waitGenerations(6)
		gens, err := g.App.Store.Generations(context.Background(), store.GenerationFilter{})
		if err != nil {
			t.Fatal(err)
		}
		retried := 0
		for _, r := range gens {
			if len(r.Attempts) == 2 && r.Attempts[0].Outcome == "unavailable" && r.Attempts[1].Outcome == "ok" {
				retried++
			}
		}
		if retried == 0 {
			t.Errorf("no request was retried after the failing session; attempts: %+v", gens[0].Attempts)
		}
	})

	t.Run("rate limited sessions give 429 with Retry-After", func(t *testing.T) {
		g.Emu.SetFault(ssoA, grokweb.Fault{Kind: grokweb.FaultRateLimited, RetryAfter: 30 * time.Second})
		g.Emu.SetFault(ssoB, grokweb.Fault{Kind: grokweb.FaultRateLimited, RetryAfter: 30 * time.Second})
		defer g.Emu.ClearFaults()
		res := g.do(http.MethodPost, "/v1/chat/completions", userKey, chatBody("Too many.", false))
		if res.Status != http.StatusTooManyRequests || res.Header.Get("Retry-After") == "" {
			t.Fatalf("status %d retry-after %q: %s", res.Status, res.Header.Get("Retry-After"), res.Body)
		}
		// Both sessions rest but stay healthy.
		if n := g.App.Pool.Counts()[store.StatusHealthy]; n != 2 {
			t.Errorf("healthy sessions after 429s: %d, want 2", n)
		}
	})
}

// TestCutStream checks that a stream cut after its first byte ends with an
// error event and no [DONE].
func TestCutStream(t *testing.T) {
	g := startGateway(t, sqliteStore)
	g.Emu.SetFault(ssoA, grokweb.Fault{Kind: grokweb.FaultCut, AfterFrames: 5})
	g.Emu.SetFault(ssoB, grokweb.Fault{Kind: grokweb.FaultCut, AfterFrames: 5})
	res := g.do(http.MethodPost, "/v1/chat/completions", userKey, chatBody("Cut me off.", true))
	if res.Status != http.StatusOK {
		t.Fatalf("status %d: %s", res.Status, res.Body)
	}
	events := sseData(t, res.Body)
	if len(events) == 0 {
		t.Fatal("no events")
	}
	last := events[len(events)-1]
	if last == "[DONE]" || !strings.Contains(last, `"error"`) {
		t.Fatalf("last event %q; want an error event and no [DONE]", last)
	}
	g.waitGenerations(1)
}

// TestClientDisconnect checks that a client that goes away cancels the
// upstream call and still leaves one record.
func TestClientDisconnect(t *testing.T) {
	g := startGateway(t, sqliteStore, withEmulator(func(c *grokweb.Config) { c.TokenDelay = 200 * time.Millisecond }))
	ctx, cancel := context.WithCancel(context.Background())
	client := g.client(userKey)
	stream := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
		Model: "grok-3", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Slow answer.")},
	})
	if !stream.Next() {
		t.Fatalf("no first chunk: %v", stream.Err())
	}
	cancel()
	stream.Close()
	g.waitGenerations(1)
	gens, err := g.App.Store.Generations(context.Background(), store.GenerationFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if gens[0].ErrorType == "" || gens[0].Status == http.StatusOK && gens[0].FinishReason == "stop" {
		t.Errorf("a canceled stream was recorded as complete: %+v", gens[0])
	}
	// The upstream call ended long before the 20 tokens at 200ms each.
	if gens[0].LatencyMS > 3000 {
		t.Errorf("upstream call ran on for %d ms after the client left", gens[0].LatencyMS)
	}
}
