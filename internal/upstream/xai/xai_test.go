package xai_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	xaiemu "github.com/grokproxy/grokproxy/internal/emulator/xai"
	"github.com/grokproxy/grokproxy/internal/secret"
	"github.com/grokproxy/grokproxy/internal/upstream"
	"github.com/grokproxy/grokproxy/internal/upstream/xai"
)

const (
	keyA = "xai-test-key-alpha-0123456789"
	keyB = "xai-test-key-bravo-9876543210"
)

// setup starts an emulator that accepts keyA and keyB and a client for it.
func setup(t *testing.T) (*xaiemu.Server, *xai.Client) {
	t.Helper()
	emu := xaiemu.New(xaiemu.Config{Keys: []string{keyA, keyB}, Chunks: 5})
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	return emu, xai.New(xai.Config{BaseURL: srv.URL + "/v1"})
}

func cred(key string) upstream.Credential {
	return upstream.Credential{SessionID: "ses_test", Secret: secret.New(key)}
}

// drain reads every event of s until io.EOF or an error.
func drain(t *testing.T, s upstream.Stream) ([]upstream.Event, error) {
	t.Helper()
	defer s.Close()
	var evs []upstream.Event
	for {
		ev, err := s.Next()
		if errors.Is(err, io.EOF) {
			return evs, nil
		}
		if err != nil {
			return evs, err
		}
		evs = append(evs, ev)
	}
}

func textOf(evs []upstream.Event, kind upstream.EventKind) string {
	var b strings.Builder
	for _, ev := range evs {
		if ev.Kind == kind {
			b.WriteString(ev.Text)
		}
	}
	return b.String()
}

func lastBody(t *testing.T, emu *xaiemu.Server) map[string]any {
	t.Helper()
	reqs := emu.Requests()
	if len(reqs) == 0 {
		t.Fatal("the emulator received no request")
	}
	var m map[string]any
	if err := json.Unmarshal(reqs[len(reqs)-1].Body, &m); err != nil {
		t.Fatalf("upstream body is not JSON: %v", err)
	}
	return m
}

func TestChatStreamPassesBodyThrough(t *testing.T) {
	emu, c := setup(t)
	body := `{"model":"grok-4-fast","messages":[{"role":"user","content":"hello there"}],` +
		`"stream":true,"temperature":0.3,"response_format":{"type":"json_object"},"seed":7,"stream_options":{"include_usage":false}}`
	s, err := c.Chat(context.Background(), cred(keyA), upstream.ChatRequest{
		Model: "grok-4-fast-non-reasoning", Stream: true, Body: json.RawMessage(body),
	})
	if err != nil {
		t.Fatalf("Chat: %v", err)
	}
	evs, err := drain(t, s)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}

	if evs[0].Kind != upstream.EventStart || evs[0].ResponseID == "" {
		t.Errorf("first event = %+v; want a start with the response id", evs[0])
	}
	if got := textOf(evs, upstream.EventText); !strings.HasPrefix(got, "Echo: hello there") {
		t.Errorf("text = %q; want the echo of the prompt", got)
	}
	done := evs[len(evs)-1]
	if done.Kind != upstream.EventDone || done.FinishReason != "stop" {
		t.Fatalf("last event = %+v; want done with finish stop", done)
	}
	want := emu.LastUsage()
	if done.Usage == nil || done.Usage.PromptTokens != want.PromptTokens || done.Usage.CompletionTokens != want.CompletionTokens {
		t.Errorf("usage = %+v; want the emulator's %+v", done.Usage, want)
	}

	sent := lastBody(t, emu)
	if sent["model"] != "grok-4-fast-non-reasoning" {
		t.Errorf("upstream model = %v; want the upstream id", sent["model"])
	}
	if sent["temperature"] != 0.3 || sent["seed"] != 7.0 {
		t.Errorf("temperature %v seed %v; want 0.3 and 7 passed through", sent["temperature"], sent["seed"])
	}
	if rf, _ := sent["response_format"].(map[string]any); rf["type"] != "json_object" {
		t.Errorf("response_format = %v; want it passed through", sent["response_format"])
	}
	if so, _ := sent["stream_options"].(map[string]any); so["include_usage"] != true {
		t.Errorf("stream_options = %v; want include_usage true", sent["stream_options"])
	}
}

var weatherTools = `[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object",` +
	`"properties":{"city":{"type":"string"},"unit":{"type":"string","enum":["celsius","fahrenheit"]}},"required":["city"]}}},` +
	`{"type":"function","function":{"name":"get_time","parameters":{"type":"object","properties":{"zone":{"type":"string"}}}}}]`

func TestChatStreamToolCallDeltas(t *testing.T) {
	emu, c := setup(t)
	body := `{"model":"x","messages":[{"role":"user","content":"call get_weather and get_time please"}],` +
		`"tools":` + weatherTools + `,"tool_choice":"auto"}`
	s, err := c.Chat(context.Background(), cred(keyA), upstream.ChatRequest{Model: "grok-4", Stream: true, Body: json.RawMessage(body)})
	if err != nil {
		t.Fatalf("Chat: %v", err)
	}
	evs, err := drain(t, s)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}

	type call struct{ id, name, args string }
	calls := map[int]*call{}
	for _, ev := range evs {
		if ev.Kind != upstream.EventToolCall {
			continue
		}
		d := ev.ToolCall
		c, ok := calls[d.Index]
		if !ok {
			if d.ID == "" || d.Name == "" || d.Type != "function" {
				t.Fatalf("first delta of call %d = %+v; want id, name and type", d.Index, d)
			}
			c = &call{id: d.ID, name: d.Name}
			calls[d.Index] = c
		} else if d.ID != "" || d.Name != "" {
			t.Errorf("later delta of call %d repeats id or name: %+v", d.Index, d)
		}
		c.args += d.Arguments
	}
	if len(calls) != 2 || calls[0] == nil || calls[1] == nil {
		t.Fatalf("tool calls = %v; want indexes 0 and 1", calls)
	}
	if calls[0].name != "get_weather" || calls[1].name != "get_time" {
		t.Errorf("names = %q, %q; want get_weather, get_time", calls[0].name, calls[1].name)
	}
	var args map[string]any
	if err := json.Unmarshal([]byte(calls[0].args), &args); err != nil || args["unit"] != "celsius" || args["city"] == nil {
		t.Errorf("arguments %q (%v); want JSON with city and unit celsius", calls[0].args, err)
	}
	if done := evs[len(evs)-1]; done.FinishReason != "tool_calls" {
		t.Errorf("finish = %q; want tool_calls", done.FinishReason)
	}
	sent := lastBody(t, emu)
	if tools, _ := sent["tools"].([]any); len(tools) != 2 || sent["tool_choice"] != "auto" {
		t.Errorf("tools %v tool_choice %v; want both passed through", sent["tools"], sent["tool_choice"])
	}
}

func TestChatWholeAnswerWithReasoning(t *testing.T) {
	emu, c := setup(t)
	body := `{"model":"x","messages":[{"role":"user","content":"think about get_weather"}],"tools":` + weatherTools + `}`
	s, err := c.Chat(context.Background(), cred(keyB), upstream.ChatRequest{Model: "grok-3-mini", Body: json.RawMessage(body)})
	if err != nil {
		t.Fatalf("Chat: %v", err)
	}
	evs, err := drain(t, s)
	if err != nil {
		t.Fatalf("answer: %v", err)
	}
	if got := textOf(evs, upstream.EventReasoning); !strings.Contains(got, "think about get_weather") {
		t.Errorf("reasoning = %q; want the emulator's reasoning text", got)
	}
	var tc *upstream.ToolCallDelta
	for _, ev := range evs {
		if ev.Kind == upstream.EventToolCall {
			tc = ev.ToolCall
		}
	}
	if tc == nil || tc.Name != "get_weather" || tc.Index != 0 || !json.Valid([]byte(tc.Arguments)) {
		t.Fatalf("tool call = %+v; want get_weather at index 0 with JSON arguments", tc)
	}

	// xAI counts reasoning apart from completion tokens; the client folds
	// them together as OpenAI does.
	want := emu.LastUsage()
	done := evs[len(evs)-1]
	if want.ReasoningTokens == 0 {
		t.Fatal("the emulator reported no reasoning tokens for grok-3-mini")
	}
	u := done.Usage
	if u == nil || u.ReasoningTokens != want.ReasoningTokens {
		t.Fatalf("usage = %+v; want reasoning tokens %d", u, want.ReasoningTokens)
	}
	if u.CompletionTokens != want.CompletionTokens+want.ReasoningTokens {
		t.Errorf("completion tokens = %d; want %d", u.CompletionTokens, want.CompletionTokens+want.ReasoningTokens)
	}
	if u.TotalTokens != u.PromptTokens+u.CompletionTokens {
		t.Errorf("total %d != prompt %d + completion %d", u.TotalTokens, u.PromptTokens, u.CompletionTokens)
	}
	if sent := lastBody(t, emu); sent["stream"] != false || sent["stream_options"] != nil {
		t.Errorf("stream %v stream_options %v; want false and absent", sent["stream"], sent["stream_options"])
	}
}

func TestChatBuildsBodyFromMessages(t *testing.T) {
	emu, c := setup(t)
	msgs := []upstream.Message{
		{Role: "system", Text: "be brief"},
		{Role: "user", Text: "look", Images: []upstream.Image{{MediaType: "image/png", Data: []byte{1, 2, 3}}}},
	}
	s, err := c.Chat(context.Background(), cred(keyA), upstream.ChatRequest{Model: "grok-3", Messages: msgs})
	if err != nil {
		t.Fatalf("Chat: %v", err)
	}
	if _, err := drain(t, s); err != nil {
		t.Fatal(err)
	}
	sent := lastBody(t, emu)
	got, _ := json.Marshal(sent["messages"])
	want := `[{"content":"be brief","role":"system"},{"content":[{"text":"look","type":"text"},` +
		`{"image_url":{"url":"data:image/png;base64,AQID"},"type":"image_url"}],"role":"user"}]`
	if string(got) != want {
		t.Errorf("messages = %s\nwant %s", got, want)
	}
}

func TestChatFaultOutcomes(t *testing.T) {
	tests := []struct {
		name    string
		fault   xaiemu.Fault
		outcome upstream.Outcome
		status  int
		retry   time.Duration
	}{
		{"unauthorized", xaiemu.Fault{Kind: xaiemu.FaultUnauthorized}, upstream.OutcomeUnauthorized, 401, 0},
		{"no credits", xaiemu.Fault{Kind: xaiemu.FaultForbidden}, upstream.OutcomeBlocked, 403, 0},
		{"rate limited", xaiemu.Fault{Kind: xaiemu.FaultRateLimited, RetryAfter: 30 * time.Second}, upstream.OutcomeRateLimited, 429, 30 * time.Second},
		{"reset header only", xaiemu.Fault{Kind: xaiemu.FaultRateLimited, RetryAfter: 45 * time.Second, NoRetryAfter: true}, upstream.OutcomeRateLimited, 429, 45 * time.Second},
		{"server error", xaiemu.Fault{Kind: xaiemu.FaultServerError, Status: 500}, upstream.OutcomeUnavailable, 500, 0},
		{"unavailable", xaiemu.Fault{Kind: xaiemu.FaultServerError}, upstream.OutcomeUnavailable, 503, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			emu, c := setup(t)
			emu.SetFault(keyA, tt.fault)
			_, err := c.Chat(context.Background(), cred(keyA), upstream.ChatRequest{Model: "grok-3", Stream: true,
				Messages: []upstream.Message{{Role: "user", Text: "hi"}}})
			var ue *upstream.Error
			if !errors.As(err, &ue) {
				t.Fatalf("Chat error = %v; want an *upstream.Error", err)
			}
			if ue.Outcome != tt.outcome || ue.Status != tt.status || ue.RetryAfter != tt.retry {
				t.Errorf("outcome %s status %d retry %s; want %s %d %s", ue.Outcome, ue.Status, ue.RetryAfter, tt.outcome, tt.status, tt.retry)
			}
			if strings.Contains(err.Error(), keyA) {
				t.Errorf("the error quotes the key: %v", err)
			}
		})
	}
}

func TestChatUnknownModelIsRejected(t *testing.T) {
	_, c := setup(t)
	_, err := c.Chat(context.Background(), cred(keyA), upstream.ChatRequest{Model: "grok-99",
		Messages: []upstream.Message{{Role: "user", Text: "hi"}}})
	var ue *upstream.Error
	if !errors.As(err, &ue) || ue.Outcome != upstream.OutcomeRejectedRequest || ue.Status != 404 {
		t.Fatalf("error = %v; want rejected_request with status 404", err)
	}
	if !strings.Contains(ue.Message, "grok-99") {
		t.Errorf("message = %q; want the upstream reason naming the model", ue.Message)
	}
}

func TestChatCutStreamIsBroken(t *testing.T) {
	emu, c := setup(t)
	emu.SetFault(keyA, xaiemu.Fault{Kind: xaiemu.FaultCut, AfterChunks: 3})
	s, err := c.Chat(context.Background(), cred(keyA), upstream.ChatRequest{Model: "grok-3", Stream: true,
		Messages: []upstream.Message{{Role: "user", Text: "hi"}}})
	if err != nil {
		t.Fatalf("Chat: %v", err)
	}
	evs, err := drain(t, s)
	if upstream.OutcomeOf(err) != upstream.OutcomeBrokenStream {
		t.Fatalf("stream error = %v; want broken_stream", err)
	}
	if textOf(evs, upstream.EventText) == "" {
		t.Error("no text arrived before the cut")
	}
}

func TestChatCanceledMidStream(t *testing.T) {
	emu := xaiemu.New(xaiemu.Config{Keys: []string{keyA}, Chunks: 50, TokenDelay: 20 * time.Millisecond})
	srv := httptest.NewServer(emu)
	defer srv.Close()
	c := xai.New(xai.Config{BaseURL: srv.URL + "/v1"})
	ctx, cancel := context.WithCancel(context.Background())
	s, err := c.Chat(ctx, cred(keyA), upstream.ChatRequest{Model: "grok-3", Stream: true,
		Messages: []upstream.Message{{Role: "user", Text: "hi"}}})
	if err != nil {
		t.Fatalf("Chat: %v", err)
	}
	if _, err := s.Next(); err != nil {
		t.Fatal(err)
	}
	cancel()
	_, err = drain(t, s)
	if upstream.OutcomeOf(err) != upstream.OutcomeCanceled {
		t.Fatalf("error after cancel = %v; want canceled", err)
	}
}

func TestProbe(t *testing.T) {
	emu, c := setup(t)
	if _, err := c.Probe(context.Background(), cred(keyA)); err != nil {
		t.Fatalf("Probe with a valid key: %v", err)
	}
	emu.RemoveKey(keyA)
	_, err := c.Probe(context.Background(), cred(keyA))
	if upstream.OutcomeOf(err) != upstream.OutcomeUnauthorized {
		t.Fatalf("Probe with a removed key = %v; want unauthorized", err)
	}
	if n := emu.ChatCount(keyB); n != 0 {
		t.Errorf("probes spent %d chats", n)
	}
}

func TestConnectErrorIsUnavailable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	c := xai.New(xai.Config{BaseURL: url + "/v1"})
	_, err := c.Chat(context.Background(), cred(keyA), upstream.ChatRequest{Model: "grok-3",
		Messages: []upstream.Message{{Role: "user", Text: "hi"}}})
	if upstream.OutcomeOf(err) != upstream.OutcomeUnavailable {
		t.Fatalf("error = %v; want unavailable", err)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (xai.Config{BaseURL: "ftp://example"}).Validate(); err == nil {
		t.Error("Validate accepted an ftp URL")
	}
	if err := (xai.Config{BaseURL: "http://127.0.0.1:1/v1"}).Validate(); err != nil {
		t.Errorf("Validate rejected a loopback URL: %v", err)
	}
}

func TestParseKey(t *testing.T) {
	if k, err := xai.ParseKey("  Bearer xai-abc  "); err != nil || k != "xai-abc" {
		t.Errorf("ParseKey(Bearer) = %q, %v; want xai-abc", k, err)
	}
	for _, bad := range []string{"", "   ", "xai abc", "xai-\x01", strings.Repeat("k", 600)} {
		if _, err := xai.ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%q) accepted it", bad)
		} else if bad != "" && strings.Contains(err.Error(), strings.TrimSpace(bad)) && strings.TrimSpace(bad) != "" {
			t.Errorf("ParseKey error quotes the key: %v", err)
		}
	}
}

func TestImagesReturnsPNGBytes(t *testing.T) {
	emu, c := setup(t)
	refs, err := c.Images(context.Background(), cred(keyA), upstream.ImageRequest{Model: "grok-2-image", Prompt: "a lighthouse", N: 2})
	if err != nil {
		t.Fatalf("Images: %v", err)
	}
	if len(refs) != 2 {
		t.Fatalf("got %d images; want 2", len(refs))
	}
	for i, ref := range refs {
		if ref.MediaType != "image/png" || !strings.HasPrefix(string(ref.Data), "\x89PNG") {
			t.Errorf("image %d: type %q, %d bytes; want PNG bytes", i, ref.MediaType, len(ref.Data))
		}
	}
	if sent := lastBody(t, emu); sent["response_format"] != "b64_json" || sent["n"] != 2.0 {
		t.Errorf("upstream body %v; want b64_json and n 2", sent)
	}

	emu.SetFault(keyA, xaiemu.Fault{Kind: xaiemu.FaultRateLimited, RetryAfter: 5 * time.Second})
	_, err = c.Images(context.Background(), cred(keyA), upstream.ImageRequest{Model: "grok-2-image", Prompt: "x", N: 1})
	var ue *upstream.Error
	if !errors.As(err, &ue) || ue.Outcome != upstream.OutcomeRateLimited || ue.RetryAfter != 5*time.Second {
		t.Errorf("Images under a 429 = %v; want rate_limited with a 5s reset", err)
	}
}

func TestChatOverCleartextHTTP2(t *testing.T) {
	emu := xaiemu.New(xaiemu.Config{Keys: []string{keyA}, Chunks: 3})
	var mu sync.Mutex
	var protos []string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		protos = append(protos, r.Proto)
		mu.Unlock()
		emu.ServeHTTP(w, r)
	}))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	c := xai.New(xai.Config{BaseURL: srv.URL + "/v1", CleartextHTTP2: true})

	msgs := []upstream.Message{{Role: "user", Text: "over h2c"}}
	s, err := c.Chat(context.Background(), cred(keyA), upstream.ChatRequest{Model: "grok-3", Messages: msgs, Stream: true})
	if err != nil {
		t.Fatalf("Chat: %v", err)
	}
	evs, err := drain(t, s)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	if got := textOf(evs, upstream.EventText); !strings.HasPrefix(got, "Echo: over h2c") {
		t.Errorf("text = %q; want the echo of the prompt", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(protos) != 1 || protos[0] != "HTTP/2.0" {
		t.Errorf("requests arrived as %q; want one HTTP/2.0 request", protos)
	}
}
