package xai_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/grokproxy/grokproxy/internal/emulator/xai"
)

const testKey = "xai-emulator-test-key-4242"

func start(t *testing.T) (*xai.Server, string) {
	t.Helper()
	emu := xai.New(xai.Config{Keys: []string{testKey}, Chunks: 4})
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	return emu, srv.URL
}

// call sends a request with key as bearer and returns status, headers and
// body.
func call(t *testing.T, method, url, key, body string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, b
}

func TestUnknownKeyIsUnauthorized(t *testing.T) {
	_, url := start(t)
	status, _, body := call(t, "POST", url+"/v1/chat/completions", "wrong-key",
		`{"model":"grok-3","messages":[{"role":"user","content":"hi"}]}`)
	if status != http.StatusUnauthorized {
		t.Fatalf("status %d; want 401", status)
	}
	if bytes.Contains(body, []byte("wrong-key")) {
		t.Errorf("the 401 body quotes the key: %s", body)
	}
}

func TestModelsList(t *testing.T) {
	_, url := start(t)
	status, _, body := call(t, "GET", url+"/v1/models", testKey, "")
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	var list struct {
		Data []struct{ ID string } `json:"data"`
	}
	json.Unmarshal(body, &list)
	ids := ""
	for _, m := range list.Data {
		ids += m.ID + " "
	}
	for _, want := range []string{"grok-3 ", "grok-4 ", "grok-2-image "} {
		if !strings.Contains(ids, want) {
			t.Errorf("models %q lack %q", ids, want)
		}
	}
}

func TestChatRejectsBadRequests(t *testing.T) {
	_, url := start(t)
	tests := []struct {
		name, body string
		status     int
	}{
		{"unknown model", `{"model":"grok-99","messages":[{"role":"user","content":"hi"}]}`, 404},
		{"image model", `{"model":"grok-2-image","messages":[{"role":"user","content":"hi"}]}`, 404},
		{"no messages", `{"model":"grok-3","messages":[]}`, 400},
		{"choice without tools", `{"model":"grok-3","messages":[{"role":"user","content":"hi"}],"tool_choice":"auto"}`, 400},
		{"choice names unknown tool", `{"model":"grok-3","messages":[{"role":"user","content":"hi"}],` +
			`"tools":[{"type":"function","function":{"name":"a"}}],"tool_choice":{"type":"function","function":{"name":"b"}}}`, 400},
		{"not json", `{`, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, body := call(t, "POST", url+"/v1/chat/completions", testKey, tt.body)
			if status != tt.status {
				t.Errorf("status %d; want %d (%s)", status, tt.status, body)
			}
			var e struct{ Code, Error string }
			if json.Unmarshal(body, &e) != nil || e.Code == "" || e.Error == "" {
				t.Errorf("body %s; want {code, error}", body)
			}
		})
	}
}

// sseData returns the data payloads of a server-sent event body.
func sseData(t *testing.T, body []byte) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			out = append(out, d)
		}
	}
	return out
}

func TestStreamedToolChoiceRequired(t *testing.T) {
	_, url := start(t)
	body := `{"model":"grok-4","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hello"}],` +
		`"tools":[{"type":"function","function":{"name":"lookup","parameters":{"type":"object","properties":{"n":{"type":"integer"}}}}}],"tool_choice":"required"}`
	status, h, raw := call(t, "POST", url+"/v1/chat/completions", testKey, body)
	if status != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("status %d type %q", status, h.Get("Content-Type"))
	}
	events := sseData(t, raw)
	if events[len(events)-1] != "[DONE]" {
		t.Fatalf("last event %q; want [DONE]", events[len(events)-1])
	}
	args, finish := "", ""
	var usage map[string]any
	for _, e := range events[:len(events)-1] {
		var c struct {
			Choices []struct {
				Delta struct {
					ToolCalls []struct {
						Index    int `json:"index"`
						Function struct{ Name, Arguments string }
					} `json:"tool_calls"`
				} `json:"delta"`
				FinishReason *string `json:"finish_reason"`
			} `json:"choices"`
			Usage map[string]any `json:"usage"`
		}
		if err := json.Unmarshal([]byte(e), &c); err != nil {
			t.Fatalf("chunk %q: %v", e, err)
		}
		for _, ch := range c.Choices {
			for _, tc := range ch.Delta.ToolCalls {
				args += tc.Function.Arguments
			}
			if ch.FinishReason != nil {
				finish = *ch.FinishReason
			}
		}
		if c.Usage != nil {
			usage = c.Usage
		}
	}
	if args != `{"n":1}` || finish != "tool_calls" {
		t.Errorf("arguments %q finish %q; want {\"n\":1} and tool_calls", args, finish)
	}
	details, _ := usage["completion_tokens_details"].(map[string]any)
	if usage == nil || details["reasoning_tokens"].(float64) <= 0 {
		t.Errorf("usage %v; want reasoning tokens for grok-4", usage)
	}
}

func TestToolResultIsAnswered(t *testing.T) {
	_, url := start(t)
	body := `{"model":"grok-3","messages":[{"role":"user","content":"weather?"},` +
		`{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"w","arguments":"{}"}}]},` +
		`{"role":"tool","tool_call_id":"call_1","content":"sunny, 21C"}],"tools":[{"type":"function","function":{"name":"w"}}]}`
	status, _, raw := call(t, "POST", url+"/v1/chat/completions", testKey, body)
	var c struct {
		Choices []struct {
			Message      struct{ Content string }
			FinishReason string `json:"finish_reason"`
		}
	}
	if status != 200 || json.Unmarshal(raw, &c) != nil || len(c.Choices) != 1 {
		t.Fatalf("status %d body %s", status, raw)
	}
	if c.Choices[0].Message.Content != "The tool returned: sunny, 21C" || c.Choices[0].FinishReason != "stop" {
		t.Errorf("answer %+v; want the tool result echoed with finish stop", c.Choices[0])
	}
}

func TestImages(t *testing.T) {
	_, url := start(t)
	status, _, raw := call(t, "POST", url+"/v1/images/generations", testKey,
		`{"model":"grok-2-image","prompt":"a red boat","n":2,"response_format":"b64_json"}`)
	var res struct {
		Data []struct {
			B64JSON string `json:"b64_json"`
			URL     string `json:"url"`
		}
	}
	if status != 200 || json.Unmarshal(raw, &res) != nil || len(res.Data) != 2 {
		t.Fatalf("status %d body %.200s", status, raw)
	}
	b, err := base64.StdEncoding.DecodeString(res.Data[0].B64JSON)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := png.Decode(bytes.NewReader(b)); err != nil {
		t.Errorf("b64_json is not a PNG: %v", err)
	}

	status, _, raw = call(t, "POST", url+"/v1/images/generations", testKey, `{"prompt":"a red boat"}`)
	if status != 200 || json.Unmarshal(raw, &res) != nil || len(res.Data) != 1 || res.Data[0].URL == "" {
		t.Fatalf("url answer: status %d body %s", status, raw)
	}
	status, h, img := call(t, "GET", res.Data[0].URL, "", "")
	if status != 200 || h.Get("Content-Type") != "image/png" {
		t.Fatalf("GET image: status %d type %q", status, h.Get("Content-Type"))
	}
	if _, err := png.Decode(bytes.NewReader(img)); err != nil {
		t.Errorf("image file is not a PNG: %v", err)
	}

	for _, bad := range []string{`{"prompt":"x","n":11}`, `{"prompt":""}`, `{"prompt":"x","response_format":"gif"}`} {
		if status, _, _ := call(t, "POST", url+"/v1/images/generations", testKey, bad); status != 400 {
			t.Errorf("%s: status %d; want 400", bad, status)
		}
	}
}

func TestFaultControlOverHTTP(t *testing.T) {
	emu, url := start(t)
	status, _, body := call(t, "POST", url+"/_emulator/faults", "",
		`{"key":"`+testKey+`","kind":"rate_limited","times":1,"retry_after":"30s"}`)
	if status != http.StatusNoContent {
		t.Fatalf("set fault: %d %s", status, body)
	}
	chat := `{"model":"grok-3","messages":[{"role":"user","content":"hi"}]}`
	status, h, _ := call(t, "POST", url+"/v1/chat/completions", testKey, chat)
	if status != 429 || h.Get("Retry-After") != "30" || h.Get("x-ratelimit-reset-requests") != "30s" || h.Get("x-ratelimit-remaining-requests") != "0" {
		t.Errorf("faulted chat: status %d headers %v", status, h)
	}
	if status, _, _ := call(t, "POST", url+"/v1/chat/completions", testKey, chat); status != 200 {
		t.Errorf("chat after a one-time fault: status %d; want 200", status)
	}
	if n := emu.ChatCount(testKey); n != 2 {
		t.Errorf("chat count %d; want 2", n)
	}

	call(t, "POST", url+"/_emulator/faults", "", `{"key":"`+testKey+`","kind":"unauthorized"}`)
	if status, _, _ := call(t, "GET", url+"/v1/models", testKey, ""); status != 401 {
		t.Errorf("models under a lasting unauthorized fault: %d; want 401", status)
	}
	status, _, stats := call(t, "GET", url+"/_emulator/stats", "", "")
	if status != 200 || bytes.Contains(stats, []byte(testKey)) || !bytes.Contains(stats, []byte(`"fault":"unauthorized"`)) {
		t.Errorf("stats %d %s; want the fault shown and the key hidden", status, stats)
	}
	call(t, "DELETE", url+"/_emulator/faults", "", "")
	if status, _, _ := call(t, "GET", url+"/v1/models", testKey, ""); status != 200 {
		t.Errorf("models after clearing faults: %d; want 200", status)
	}

	for _, bad := range []string{`{"kind":"cut"}`, `{"key":"k","kind":"melt"}`, `{"key":"k","kind":"server_error","status":404}`} {
		if status, _, _ := call(t, "POST", url+"/_emulator/faults", "", bad); status != 400 {
			t.Errorf("fault %s: status %d; want 400", bad, status)
		}
	}
}
