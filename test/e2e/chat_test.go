package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/param"

	"github.com/grokproxy/grokproxy/internal/store"
)

func (g *gateway) client(key string) openai.Client {
	return openai.NewClient(option.WithBaseURL(g.URL+"/v1/"), option.WithAPIKey(key), option.WithMaxRetries(0))
}

// TestConformance runs the OpenAI conformance suite against both stores.
func TestConformance(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind storeKind) {
		g := startGateway(t, kind)
		admitted := int64(0)
		t.Run("non-streamed chat", func(t *testing.T) {
			c := g.client(userKey)
			res, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
				Model: "grok-3",
				Messages: []openai.ChatCompletionMessageParamUnion{
					openai.SystemMessage("You answer in English."),
					openai.UserMessage("What colour is the sky?"),
					openai.AssistantMessage("Usually blue."),
					openai.UserMessage("And at sunset over the harbour?"),
				},
			})
			admitted++
			if err != nil {
				t.Fatalf("chat: %v", err)
			}
			if res.Object != "chat.completion" || res.Model != "grok-3" || !strings.HasPrefix(res.ID, "chatcmpl-") {
				t.Errorf("object %q model %q id %q", res.Object, res.Model, res.ID)
			}
			if len(res.Choices) != 1 {
				t.Fatalf("choices: %d", len(res.Choices))
			}
			ch := res.Choices[0]
			if ch.FinishReason != "stop" || ch.Message.Role != "assistant" {
				t.Errorf("finish %q role %q", ch.FinishReason, ch.Message.Role)
			}
			if !strings.Contains(ch.Message.Content, "And at sunset over the harbour?") {
				t.Errorf("answer does not echo the last user line: %q", ch.Message.Content)
			}
			if n := len(strings.Fields(ch.Message.Content)); n < 40 {
				t.Errorf("answer has %d words, want at least 40", n)
			}
			if res.Usage.PromptTokens <= 0 || res.Usage.CompletionTokens <= 0 ||
				res.Usage.TotalTokens != res.Usage.PromptTokens+res.Usage.CompletionTokens {
				t.Errorf("usage %+v", res.Usage)
			}
			// The whole history reached the upstream, not just the last turn.
			sent := g.lastUpstreamMessage(t)
			for _, part := range []string{"You answer in English.", "What colour is the sky?", "Usually blue.", "And at sunset over the harbour?"} {
				if !strings.Contains(sent, part) {
					t.Errorf("upstream message lacks %q: %q", part, sent)
				}
			}
		})

		t.Run("streamed chat", func(t *testing.T) {
			c := g.client(userKey)
			stream := c.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
				Model:         "grok-3",
				Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Count the harbour boats.")},
				StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: param.NewOpt(true)},
			})
			admitted++
			var (
				acc      openai.ChatCompletionAccumulator
				ids      = map[string]bool{}
				chunks   int
				finishes int
				usage    int
				text     strings.Builder
			)
			for stream.Next() {
				ch := stream.Current()
				acc.AddChunk(ch)
				chunks++
				ids[ch.ID] = true
				if ch.Object != "chat.completion.chunk" || ch.Model != "grok-3" {
					t.Errorf("chunk object %q model %q", ch.Object, ch.Model)
				}
				if len(ch.Choices) == 0 {
					usage++
					if ch.Usage.CompletionTokens <= 0 {
						t.Errorf("usage chunk without tokens: %+v", ch.Usage)
					}
					continue
				}
				if chunks == 1 && ch.Choices[0].Delta.Role != "assistant" {
					t.Errorf("first delta role %q", ch.Choices[0].Delta.Role)
				}
				if ch.Choices[0].FinishReason != "" {
					finishes++
				}
				text.WriteString(ch.Choices[0].Delta.Content)
			}
			if err := stream.Err(); err != nil {
				t.Fatalf("stream: %v", err)
			}
			if len(ids) != 1 {
				t.Errorf("chunk ids: %v", ids)
			}
			if finishes != 1 || usage != 1 {
				t.Errorf("finish chunks %d, usage chunks %d; want 1 and 1", finishes, usage)
			}
			if chunks < 20 {
				t.Errorf("got %d chunks; each upstream token should be its own chunk", chunks)
			}
			if !strings.Contains(text.String(), "Count the harbour boats.") {
				t.Errorf("streamed text lacks the prompt: %q", text.String())
			}
			if len(acc.Choices) != 1 || acc.Choices[0].Message.Content != text.String() {
				t.Errorf("accumulated message differs from deltas")
			}
		})

		t.Run("raw stream format", func(t *testing.T) {
			res := g.do(http.MethodPost, "/v1/chat/completions", userKey, map[string]any{
				"model": "grok-3", "stream": true, "stream_options": map[string]any{"include_usage": true},
				"messages": []map[string]any{{"role": "user", "content": []map[string]any{{"type": "text", "text": "Name a fish."}}}},
			})
			admitted++
			if res.Status != http.StatusOK {
				t.Fatalf("status %d: %s", res.Status, res.Body)
			}
			if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
				t.Errorf("content type %q", ct)
			}
			if cc := res.Header.Get("Cache-Control"); cc != "no-cache" {
				t.Errorf("cache control %q", cc)
			}
			events := sseData(t, res.Body)
			if len(events) < 3 || events[len(events)-1] != "[DONE]" {
				t.Fatalf("stream does not end with [DONE]: %q", tail(events))
			}
			var last map[string]any
			json.Unmarshal([]byte(events[len(events)-2]), &last)
			if ch, _ := last["choices"].([]any); ch == nil || len(ch) != 0 {
				t.Errorf("usage chunk must have empty choices: %s", events[len(events)-2])
			}
		})

		t.Run("reasoning goes to reasoning_content", func(t *testing.T) {
			res := g.do(http.MethodPost, "/v1/chat/completions", userKey, map[string]any{
				"model": "grok-4-expert", "stream": true,
				"messages": []map[string]any{{"role": "user", "content": "Think about tides."}},
			})
			admitted++
			if res.Status != http.StatusOK {
				t.Fatalf("status %d: %s", res.Status, res.Body)
			}
			var reasoning, content strings.Builder
			for _, ev := range sseData(t, res.Body) {
				if ev == "[DONE]" {
					continue
				}
				var ch struct {
					Choices []struct {
						Delta struct {
							Content          string `json:"content"`
							ReasoningContent string `json:"reasoning_content"`
						} `json:"delta"`
					} `json:"choices"`
				}
				if err := json.Unmarshal([]byte(ev), &ch); err != nil {
					t.Fatalf("chunk: %v: %s", err, ev)
				}
				for _, c := range ch.Choices {
					if c.Delta.Content != "" && c.Delta.ReasoningContent != "" {
						t.Errorf("one delta carries both content and reasoning: %s", ev)
					}
					reasoning.WriteString(c.Delta.ReasoningContent)
					content.WriteString(c.Delta.Content)
				}
			}
			if reasoning.Len() == 0 || content.Len() == 0 {
				t.Fatalf("reasoning %q content %q", reasoning.String(), content.String())
			}
			if strings.Contains(content.String(), strings.TrimSpace(reasoning.String())) {
				t.Errorf("reasoning text leaked into content")
			}
		})

		t.Run("models", func(t *testing.T) {
			c := g.client(userKey)
			page, err := c.Models.List(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, m := range page.Data {
				if m.ID == "grok-3" {
					found = true
				}
				if m.Object != "model" || m.OwnedBy == "" {
					t.Errorf("model entry %+v", m)
				}
			}
			if !found {
				t.Errorf("grok-3 missing from %d models", len(page.Data))
			}
			m, err := c.Models.Get(context.Background(), "grok-3")
			if err != nil || m.ID != "grok-3" {
				t.Errorf("get model: %+v %v", m, err)
			}
			_, err = c.Models.Get(context.Background(), "no-such-model")
			assertAPIError(t, err, http.StatusNotFound, "model_not_found", "model")
		})

		t.Run("sdk errors", func(t *testing.T) {
			c := g.client(userKey)
			_, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
				Model: "no-such-model", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
			})
			admitted++
			assertAPIError(t, err, http.StatusNotFound, "model_not_found", "model")
			_, err = c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
				Model: "grok-3", N: param.NewOpt[int64](2), Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
			})
			admitted++
			assertAPIError(t, err, http.StatusBadRequest, "", "n")
			wrong := g.client("wrong-key")
			_, err = wrong.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
				Model: "grok-3", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
			})
			assertAPIError(t, err, http.StatusUnauthorized, "invalid_api_key", "")
		})

		t.Run("generation rows", func(t *testing.T) {
			g.waitGenerations(admitted)
			gens, err := g.App.Store.Generations(context.Background(), store.GenerationFilter{Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			var ok int
			for _, r := range gens {
				if r.RequestID == "" || r.UserID == "" || r.Model == "" || r.ClientIP == "" || r.ID == "" {
					t.Errorf("row lacks identity fields: %+v", r)
				}
				if r.Status == http.StatusOK {
					ok++
					if r.SessionID == "" || r.Response == "" || r.Prompt == "" || r.CompletionTokens == 0 || r.FinishReason != "stop" {
						t.Errorf("successful row incomplete: %+v", r)
					}
				} else if r.ErrorType == "" {
					t.Errorf("failed row without error type: %+v", r)
				}
			}
			if ok != 4 {
				t.Errorf("successful rows: %d, want 4", ok)
			}
		})
	})
}

// lastUpstreamMessage returns the message text of the newest chat request
// the emulator received.
func (g *gateway) lastUpstreamMessage(t *testing.T) string {
	t.Helper()
	reqs := g.Emu.Requests()
	for i := len(reqs) - 1; i >= 0; i-- {
		var body struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(reqs[i].Body, &body) == nil && body.Message != "" {
			return body.Message
		}
	}
	t.Fatal("the emulator received no chat message")
	return ""
}

func assertAPIError(t *testing.T, err error, status int, code, param string) {
	t.Helper()
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("want API error %d, got %v", status, err)
	}
	if apiErr.StatusCode != status || (code != "" && apiErr.Code != code) || apiErr.Param != param {
		t.Errorf("error status %d code %q param %q type %q; want %d %q %q",
			apiErr.StatusCode, apiErr.Code, apiErr.Param, apiErr.Type, status, code, param)
	}
	if apiErr.Message == "" || apiErr.Type == "" {
		t.Errorf("error lacks message or type: %+v", apiErr)
	}
}

// sseData returns the data fields of an event stream in order.
func sseData(t *testing.T, body []byte) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if data, ok := strings.CutPrefix(line, "data: "); ok {
			out = append(out, data)
		}
	}
	return out
}

func tail(s []string) []string {
	if len(s) > 3 {
		return s[len(s)-3:]
	}
	return s
}
