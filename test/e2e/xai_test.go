package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/packages/param"
	"github.com/openai/openai-go/v3/shared"

	"github.com/grokproxy/grokproxy/internal/config"
	"github.com/grokproxy/grokproxy/internal/emulator/grokweb"
	xaiemu "github.com/grokproxy/grokproxy/internal/emulator/xai"
)

// API keys the xAI emulator accepts; the log check looks for each of them.
const (
	xaiKeyA = "xai-e2e-key-alpha-5d7c1b8e"
	xaiKeyB = "xai-e2e-key-bravo-2a9f3e6d"
)

// mixedGateway is a gateway with the xAI emulator beside the Grok web one.
type mixedGateway struct {
	*gateway
	XAI   *xaiemu.Server
	xaiID map[string]string // session id by API key
}

// startMixedGateway starts a gateway whose xai provider points at an xAI
// emulator. It keeps the two Grok web sessions when grok is set and adds
// one xai session per key.
func startMixedGateway(t *testing.T, kind storeKind, grok bool, keys ...string) *mixedGateway {
	t.Helper()
	return startMixedGatewayWith(t, kind, grok, xaiemu.Config{Chunks: 6}, keys...)
}

// startMixedGatewayWith is startMixedGateway with an emulator configured by
// cfg. The emulator accepts xaiKeyA and xaiKeyB whatever cfg.Keys says.
func startMixedGatewayWith(t *testing.T, kind storeKind, grok bool, cfg xaiemu.Config, keys ...string) *mixedGateway {
	t.Helper()
	cfg.Keys = []string{xaiKeyA, xaiKeyB}
	emu := xaiemu.New(cfg)
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	g := startGateway(t, kind, withConfig(func(c *config.Config) { c.XAIBaseURL = srv.URL + "/v1" }))
	m := &mixedGateway{gateway: g, XAI: emu, xaiID: map[string]string{}}
	t.Cleanup(func() {
		logs := g.logs.String()
		for _, k := range []string{xaiKeyA, xaiKeyB} {
			if strings.Contains(logs, k) {
				t.Errorf("an xAI key appears in the log output: %.8s…", k)
			}
		}
	})

	if !grok {
		res := g.admin(http.MethodGet, "/admin/sessions?provider=grok", nil)
		var list struct {
			Data []struct{ ID string } `json:"data"`
		}
		if err := json.Unmarshal(res.Body, &list); err != nil || len(list.Data) != 2 {
			t.Fatalf("list grok sessions: %d %s", res.Status, res.Body)
		}
		for _, s := range list.Data {
			if res := g.admin(http.MethodDelete, "/admin/sessions/"+s.ID, nil); res.Status >= 300 {
				t.Fatalf("delete session: %d %s", res.Status, res.Body)
			}
		}
	}
	for _, k := range keys {
		res := g.admin(http.MethodPost, "/admin/sessions", map[string]any{"provider": "xai", "api_key": k})
		if res.Status != http.StatusCreated {
			t.Fatalf("add xai session: %d %s", res.Status, res.Body)
		}
		if strings.Contains(string(res.Body), k) {
			t.Fatalf("the admin API echoed the key: %s", res.Body)
		}
		m.xaiID[k] = res.json(t)["id"].(string)
	}
	return m
}

// grokChats returns how many chats reached the Grok web emulator.
func (m *mixedGateway) grokChats() int { return m.Emu.ChatCount(ssoA) + m.Emu.ChatCount(ssoB) }

// xaiChats returns how many chats reached the xAI emulator.
func (m *mixedGateway) xaiChats() int { return m.XAI.ChatCount(xaiKeyA) + m.XAI.ChatCount(xaiKeyB) }

// lastXAIBody returns the JSON body of the latest chat the xAI emulator got.
func (m *mixedGateway) lastXAIBody(t *testing.T) map[string]any {
	t.Helper()
	reqs := m.XAI.Requests()
	for i := len(reqs) - 1; i >= 0; i-- {
		if reqs[i].Path == "/v1/chat/completions" {
			var body map[string]any
			if err := json.Unmarshal(reqs[i].Body, &body); err != nil {
				t.Fatal(err)
			}
			return body
		}
	}
	t.Fatal("the xAI emulator got no chat")
	return nil
}

// session returns the admin view of a session.
func (m *mixedGateway) session(t *testing.T, id string) map[string]any {
	t.Helper()
	res := m.admin(http.MethodGet, "/admin/sessions/"+id, nil)
	if res.Status != http.StatusOK {
		t.Fatalf("get session: %d %s", res.Status, res.Body)
	}
	return res.json(t)
}

var weatherTool = openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
	Name:        "get_weather",
	Description: param.NewOpt("Current weather of a city"),
	Parameters: shared.FunctionParameters{
		"type": "object",
		"properties": map[string]any{
			"city": map[string]any{"type": "string"},
			"unit": map[string]any{"type": "string", "enum": []string{"celsius", "fahrenheit"}},
		},
		"required": []string{"city"},
	},
})

// TestXAIToolRoundTrip streams a tool call through the gateway with the
// official SDK, sends the tool result back and checks that tools went to
// the xai provider although the model prefers Grok web.
func TestXAIToolRoundTrip(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind storeKind) {
		m := startMixedGateway(t, kind, true, xaiKeyA)
		c := m.client(userKey)
		ctx := context.Background()
		params := openai.ChatCompletionNewParams{
			Model:         "grok-4-fast",
			Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Please call get_weather for Oslo.")},
			Tools:         []openai.ChatCompletionToolUnionParam{weatherTool},
			ToolChoice:    openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: param.NewOpt("auto")},
			Temperature:   param.NewOpt(0.2),
			StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: param.NewOpt(true)},
		}
		stream := c.Chat.Completions.NewStreaming(ctx, params)
		var acc openai.ChatCompletionAccumulator
		deltas := 0
		for stream.Next() {
			chunk := stream.Current()
			acc.AddChunk(chunk)
			if len(chunk.Choices) > 0 && len(chunk.Choices[0].Delta.ToolCalls) > 0 {
				deltas++
			}
			if chunk.Model != "grok-4-fast" {
				t.Errorf("chunk model %q; want the public id grok-4-fast", chunk.Model)
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatalf("stream: %v", err)
		}
		if deltas < 2 {
			t.Errorf("got %d tool-call deltas; want the call streamed in pieces", deltas)
		}
		if len(acc.Choices) != 1 || acc.Choices[0].FinishReason != "tool_calls" {
			t.Fatalf("choices %+v; want one with finish tool_calls", acc.Choices)
		}
		calls := acc.Choices[0].Message.ToolCalls
		if len(calls) != 1 || calls[0].Function.Name != "get_weather" || !strings.HasPrefix(calls[0].ID, "call_") {
			t.Fatalf("tool calls %+v; want one get_weather call with an id", calls)
		}
		var args map[string]any
		if err := json.Unmarshal([]byte(calls[0].Function.Arguments), &args); err != nil || args["unit"] != "celsius" {
			t.Errorf("arguments %q (%v); want valid JSON with unit celsius", calls[0].Function.Arguments, err)
		}

		sent := m.lastXAIBody(t)
		if sent["model"] != "grok-4-fast-non-reasoning" || sent["tool_choice"] != "auto" || sent["temperature"] != 0.2 {
			t.Errorf("upstream got model %v tool_choice %v temperature %v", sent["model"], sent["tool_choice"], sent["temperature"])
		}
		if tools, _ := sent["tools"].([]any); len(tools) != 1 {
			t.Errorf("upstream tools %v; want the one tool", sent["tools"])
		}

		// Send the tool result back, without streaming.
		params.Messages = append(params.Messages, acc.Choices[0].Message.ToParam(),
			openai.ToolMessage("12 degrees and rain", calls[0].ID))
		params.StreamOptions = openai.ChatCompletionStreamOptionsParam{}
		res, err := c.Chat.Completions.New(ctx, params)
		if err != nil {
			t.Fatalf("tool result turn: %v", err)
		}
		if got := res.Choices[0].Message.Content; got != "The tool returned: 12 degrees and rain" {
			t.Errorf("answer %q; want the tool result echoed", got)
		}
		if res.Choices[0].FinishReason != "stop" || res.Model != "grok-4-fast" {
			t.Errorf("finish %q model %q", res.Choices[0].FinishReason, res.Model)
		}
		if m.grokChats() != 0 || m.xaiChats() != 2 {
			t.Errorf("grok chats %d, xai chats %d; want tools served by xai only", m.grokChats(), m.xaiChats())
		}
		m.waitGenerations(2)
	})
}

func TestXAIWholeToolCall(t *testing.T) {
	m := startMixedGateway(t, sqliteStore, false, xaiKeyA)
	c := m.client(userKey)
	res, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model:    "grok-3",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("What is the weather?")},
		Tools:    []openai.ChatCompletionToolUnionParam{weatherTool},
		ToolChoice: openai.ChatCompletionToolChoiceOptionUnionParam{OfFunctionToolChoice: &openai.ChatCompletionNamedToolChoiceParam{
			Function: openai.ChatCompletionNamedToolChoiceFunctionParam{Name: "get_weather"}}},
	})
	if err != nil {
		t.Fatalf("chat: %v", err)
	}
	msg := res.Choices[0].Message
	if res.Choices[0].FinishReason != "tool_calls" || len(msg.ToolCalls) != 1 || msg.ToolCalls[0].Function.Name != "get_weather" {
		t.Fatalf("message %+v finish %q; want one get_weather call", msg, res.Choices[0].FinishReason)
	}
	if !json.Valid([]byte(msg.ToolCalls[0].Function.Arguments)) || msg.ToolCalls[0].Type != "function" {
		t.Errorf("tool call %+v; want type function with JSON arguments", msg.ToolCalls[0])
	}
	if strings.Contains(msg.RawJSON(), `"index"`) {
		t.Errorf("message tool calls carry a stream index: %s", msg.RawJSON())
	}
}

func TestXAIUsageWithReasoning(t *testing.T) {
	m := startMixedGateway(t, sqliteStore, false, xaiKeyA)
	c := m.client(userKey)
	ctx := context.Background()
	msgs := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Think it over: why is the sea salty?")}

	res, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "grok-4-expert", Messages: msgs})
	if err != nil {
		t.Fatalf("chat: %v", err)
	}
	if got := m.lastXAIBody(t)["model"]; got != "grok-4-fast-reasoning" {
		t.Errorf("upstream model %v; want grok-4-fast-reasoning", got)
	}
	up := m.XAI.LastUsage()
	if up.ReasoningTokens == 0 {
		t.Fatal("the emulator reported no reasoning tokens")
	}
	u := res.Usage
	if u.CompletionTokensDetails.ReasoningTokens != int64(up.ReasoningTokens) {
		t.Errorf("reasoning tokens %d; want upstream's %d", u.CompletionTokensDetails.ReasoningTokens, up.ReasoningTokens)
	}
	if u.PromptTokens != int64(up.PromptTokens) || u.CompletionTokens != int64(up.CompletionTokens+up.ReasoningTokens) {
		t.Errorf("usage %+v; want prompt %d and completion %d+%d", u, up.PromptTokens, up.CompletionTokens, up.ReasoningTokens)
	}
	if u.TotalTokens != int64(up.TotalTokens) {
		t.Errorf("total tokens %d; want upstream's %d", u.TotalTokens, up.TotalTokens)
	}

	stream := c.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
		Model: "grok-4-expert", Messages: msgs,
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: param.NewOpt(true)},
	})
	var last openai.ChatCompletionChunk
	for stream.Next() {
		last = stream.Current()
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	if last.Usage.CompletionTokensDetails.ReasoningTokens != int64(m.XAI.LastUsage().ReasoningTokens) {
		t.Errorf("streamed usage %+v; want upstream reasoning tokens %d", last.Usage, m.XAI.LastUsage().ReasoningTokens)
	}
	m.waitGenerations(2)
}

// modelIDs returns the ids that /v1/models lists.
func (m *mixedGateway) modelIDs(t *testing.T) []string {
	t.Helper()
	c := m.client(userKey)
	page, err := c.Models.List(context.Background())
	if err != nil {
		t.Fatalf("list models: %v", err)
	}
	var ids []string
	for _, mod := range page.Data {
		ids = append(ids, mod.ID)
	}
	return ids
}

func chatOnce(t *testing.T, m *mixedGateway, model string) (*openai.ChatCompletion, error) {
	t.Helper()
	c := m.client(userKey)
	return c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model: model, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Name a harbour.")},
	})
}

func statusOf(err error) int {
	var apiErr *openai.Error
	if errors.As(err, &apiErr) {
		return apiErr.StatusCode
	}
	return 0
}

// grokwebServerError makes every chat of a Grok web account fail with 503.
var grokwebServerError = grokweb.Fault{Kind: grokweb.FaultServerError}

func TestModelRouting(t *testing.T) {
	t.Run("xai only", func(t *testing.T) {
		m := startMixedGateway(t, sqliteStore, false, xaiKeyA)
		ids := m.modelIDs(t)
		if !slices.Contains(ids, "grok-3") || slices.Contains(ids, "grok-4-heavy") {
			t.Errorf("models %v; want grok-3 listed and the Grok-web-only grok-4-heavy not", ids)
		}
		res, err := chatOnce(t, m, "grok-3")
		if err != nil || res.Model != "grok-3" {
			t.Fatalf("grok-3 on xai: %v", err)
		}
		if m.xaiChats() != 1 || m.grokChats() != 0 {
			t.Errorf("xai chats %d grok chats %d; want the fallback route used", m.xaiChats(), m.grokChats())
		}
		if _, err := chatOnce(t, m, "grok-4-heavy"); statusOf(err) != http.StatusServiceUnavailable {
			t.Errorf("grok-4-heavy without a grok session: %v; want 503", err)
		}
	})

	t.Run("grok only", func(t *testing.T) {
		m := startMixedGateway(t, sqliteStore, true)
		ids := m.modelIDs(t)
		if !slices.Contains(ids, "grok-4-heavy") || !slices.Contains(ids, "grok-3-mini") {
			t.Errorf("models %v; want grok-4-heavy and grok-3-mini", ids)
		}
		if _, err := chatOnce(t, m, "grok-3-mini"); err != nil {
			t.Fatalf("grok-3-mini on grok web: %v", err)
		}
		if m.grokChats() != 1 || m.xaiChats() != 0 {
			t.Errorf("grok chats %d xai chats %d; want the second route used", m.grokChats(), m.xaiChats())
		}
		c := m.client(userKey)
		_, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
			Model:    "grok-3",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("call get_weather")},
			Tools:    []openai.ChatCompletionToolUnionParam{weatherTool},
		})
		if statusOf(err) != http.StatusServiceUnavailable || m.grokChats() != 1 {
			t.Errorf("tools without an xai session: %v, grok chats %d; want 503 and no grok chat", err, m.grokChats())
		}
	})

	t.Run("both", func(t *testing.T) {
		m := startMixedGateway(t, sqliteStore, true, xaiKeyA)
		if ids := m.modelIDs(t); len(ids) != 7 {
			t.Errorf("models %v; want every chat and image model", ids)
		}
		if _, err := chatOnce(t, m, "grok-3"); err != nil || m.grokChats() != 1 || m.xaiChats() != 0 {
			t.Fatalf("grok-3: %v, grok %d xai %d; want Grok web first", err, m.grokChats(), m.xaiChats())
		}
		if _, err := chatOnce(t, m, "grok-3-mini"); err != nil || m.xaiChats() != 1 {
			t.Fatalf("grok-3-mini: %v, xai %d; want xai first", err, m.xaiChats())
		}
		if got := m.lastXAIBody(t)["model"]; got != "grok-3-mini" {
			t.Errorf("upstream model %v", got)
		}

		// Every Grok web session fails: the request falls back to xai.
		for _, sso := range []string{ssoA, ssoB} {
			m.Emu.SetFault(sso, grokwebServerError)
		}
		res, err := chatOnce(t, m, "grok-3")
		if err != nil {
			t.Fatalf("grok-3 with Grok web down: %v", err)
		}
		if res.Model != "grok-3" || m.xaiChats() != 2 || m.grokChats() != 3 {
			t.Errorf("model %q, xai chats %d, grok chats %d; want both grok sessions tried, then xai", res.Model, m.xaiChats(), m.grokChats())
		}
	})
}

func TestXAISessionFaults(t *testing.T) {
	t.Run("401 expires the key", func(t *testing.T) {
		m := startMixedGateway(t, sqliteStore, false, xaiKeyA, xaiKeyB)
		m.XAI.SetFault(xaiKeyB, xaiemu.Fault{Kind: xaiemu.FaultUnauthorized})
		for i := 0; i < 10 && m.XAI.ChatCount(xaiKeyB) == 0; i++ {
			if _, err := chatOnce(t, m, "grok-3-mini"); err != nil {
				t.Fatalf("chat %d: %v; want key A to serve it", i, err)
			}
		}
		if m.XAI.ChatCount(xaiKeyB) == 0 {
			t.Fatal("key B was never tried in 10 requests")
		}
		id := m.xaiID[xaiKeyB]
		deadline := time.Now().Add(10 * time.Second)
		for m.session(t, id)["status"] != "expired" && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if s := m.session(t, id); s["status"] != "expired" {
			t.Errorf("key B status %v; want expired after the login check", s["status"])
		}
		if s := m.session(t, m.xaiID[xaiKeyA]); s["status"] != "healthy" {
			t.Errorf("key A status %v; want healthy", s["status"])
		}
	})

	t.Run("429 rests the key", func(t *testing.T) {
		m := startMixedGateway(t, sqliteStore, false, xaiKeyA, xaiKeyB)
		m.XAI.SetFault(xaiKeyA, xaiemu.Fault{Kind: xaiemu.FaultRateLimited, RetryAfter: 30 * time.Second, NoRetryAfter: true})
		for i := 0; i < 10 && m.XAI.ChatCount(xaiKeyA) == 0; i++ {
			if _, err := chatOnce(t, m, "grok-3-mini"); err != nil {
				t.Fatalf("chat %d: %v; want key B to serve it", i, err)
			}
		}
		s := m.session(t, m.xaiID[xaiKeyA])
		if s["status"] != "healthy" || s["resting"] != true {
			t.Fatalf("key A %v resting %v; want healthy and resting", s["status"], s["resting"])
		}
		until, err := time.Parse(time.RFC3339Nano, s["cooldown_until"].(string))
		if rest := time.Until(until); err != nil || rest < 20*time.Second || rest > 31*time.Second {
			t.Errorf("cooldown_until %v (%v); want about 30s from now, from x-ratelimit-reset-requests", s["cooldown_until"], err)
		}
	})

	t.Run("429 on the only key", func(t *testing.T) {
		m := startMixedGateway(t, sqliteStore, false, xaiKeyA)
		m.XAI.SetFault(xaiKeyA, xaiemu.Fault{Kind: xaiemu.FaultRateLimited, RetryAfter: 25 * time.Second})
		res := m.do(http.MethodPost, "/v1/chat/completions", userKey,
			map[string]any{"model": "grok-3", "messages": []map[string]string{{"role": "user", "content": "hi"}}})
		if res.Status != http.StatusTooManyRequests || res.Header.Get("Retry-After") != "25" {
			t.Errorf("status %d Retry-After %q; want 429 and 25", res.Status, res.Header.Get("Retry-After"))
		}
		if m.XAI.ChatCount(xaiKeyA) != 1 {
			t.Errorf("xai chats %d; want 1, as the resting key is not retried", m.XAI.ChatCount(xaiKeyA))
		}
	})
}
