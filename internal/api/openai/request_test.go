package openai

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// checkChat runs a body through every check the chat handler makes before
// it picks a model: decoding, field validation and message conversion.
func checkChat(body []byte, lim Limits) error {
	var req ChatRequest
	if err := decodeBody(body, &req); err != nil {
		return err
	}
	if err := req.validate(lim); err != nil {
		return err
	}
	_, err := req.upstreamMessages(lim)
	return err
}

func chatBody(extra string) string {
	return `{"model":"grok-3","messages":[{"role":"user","content":"hi"}]` + extra + `}`
}

func TestCheckChatRejects(t *testing.T) {
	lim := Limits{MaxMessages: 3, MaxPromptBytes: 16}
	tests := []struct {
		name   string
		body   string
		status int
		code   string
		param  string
	}{
		{"empty body", ``, 400, "invalid_json", ""},
		{"not json", `{"model":`, 400, "invalid_json", ""},
		{"invalid utf-8", "{\"model\":\"grok-3\xff\",\"messages\":[]}", 400, "invalid_encoding", ""},
		{"nested too deep", `{"model":"m","messages":[{"role":"user","content":"x"}],"metadata":` +
			strings.Repeat("[", maxJSONDepth+1) + strings.Repeat("]", maxJSONDepth+1) + `}`, 400, "invalid_json", ""},
		{"model missing", `{"messages":[{"role":"user","content":"hi"}]}`, 400, "missing_required_parameter", "model"},
		{"messages missing", `{"model":"grok-3"}`, 400, "missing_required_parameter", "messages"},
		{"too many messages", `{"model":"m","messages":[{"role":"user","content":"a"},{"role":"user","content":"b"},` +
			`{"role":"user","content":"c"},{"role":"user","content":"d"}]}`, 400, "too_many_messages", "messages"},
		{"prompt too large", `{"model":"m","messages":[{"role":"user","content":"` + strings.Repeat("a", 17) + `"}]}`,
			400, "context_length_exceeded", "messages"},
		{"model not a string", `{"model":7,"messages":[{"role":"user","content":"hi"}]}`, 400, "invalid_type", "model"},
		{"messages not an array", `{"model":"m","messages":"hi"}`, 400, "invalid_type", "messages"},
		{"stream not a boolean", chatBody(`,"stream":"yes"`), 400, "invalid_type", "stream"},
		{"temperature a string", chatBody(`,"temperature":"hot"`), 400, "invalid_type", "temperature"},
		{"max_tokens a fraction", chatBody(`,"max_tokens":1.5`), 400, "invalid_type", "max_tokens"},
		{"max_tokens overflows", chatBody(`,"max_tokens":1e30`), 400, "invalid_type", "max_tokens"},
		{"temperature above 2", chatBody(`,"temperature":2.5`), 400, "invalid_value", "temperature"},
		{"temperature negative", chatBody(`,"temperature":-0.1`), 400, "invalid_value", "temperature"},
		{"top_p above 1", chatBody(`,"top_p":1.01`), 400, "invalid_value", "top_p"},
		{"max_tokens zero", chatBody(`,"max_tokens":0`), 400, "invalid_value", "max_tokens"},
		{"max_completion_tokens negative", chatBody(`,"max_completion_tokens":-5`), 400, "invalid_value", "max_completion_tokens"},
		{"presence_penalty below -2", chatBody(`,"presence_penalty":-2.5`), 400, "invalid_value", "presence_penalty"},
		{"frequency_penalty above 2", chatBody(`,"frequency_penalty":3`), 400, "invalid_value", "frequency_penalty"},
		{"n zero", chatBody(`,"n":0`), 400, "invalid_value", "n"},
		{"n above one", chatBody(`,"n":2`), 400, "unsupported_value", "n"},
		{"stream_options without stream", chatBody(`,"stream_options":{"include_usage":true}`), 400, "invalid_value", "stream_options"},
		{"unknown role", `{"model":"m","messages":[{"role":"root","content":"hi"}]}`, 400, "invalid_value", "messages[0].role"},
		{"role missing", `{"model":"m","messages":[{"content":"hi"}]}`, 400, "missing_required_parameter", "messages[0].role"},
		{"content a number", `{"model":"m","messages":[{"role":"user","content":5}]}`, 400, "invalid_type", "messages[0].content"},
		{"content missing", `{"model":"m","messages":[{"role":"user"}]}`, 400, "missing_required_parameter", "messages[0].content"},
		{"unknown part type", `{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio"}]}]}`,
			400, "invalid_value", "messages[0].content[0].type"},
		{"part type missing", `{"model":"m","messages":[{"role":"user","content":[{"text":"hi"}]}]}`,
			400, "missing_required_parameter", "messages[0].content[0].type"},
		{"part not an object", `{"model":"m","messages":[{"role":"user","content":["hi"]}]}`,
			400, "invalid_type", "messages[0].content"},
		{"remote image url", `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"http://127.0.0.1/x.png"}}]}]}`,
			400, "unsupported_image_url", "messages[0].content[0].image_url.url"},
		{"image not base64", `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,@@"}}]}]}`,
			400, "invalid_image_url", "messages[0].content[0].image_url.url"},
		{"image type not allowed", `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:text/html;base64,PGI+"}}]}]}`,
			400, "invalid_image_format", "messages[0].content[0].image_url.url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkChat([]byte(tt.body), lim)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("got %v; want an *Error", err)
			}
			got := [4]any{e.Status, e.Type, e.Code, e.Param}
			want := [4]any{tt.status, TypeInvalidRequest, tt.code, tt.param}
			if got != want {
				t.Errorf("got %v; want %v (message %q)", got, want, e.Message)
			}
		})
	}
}

func TestCheckChatAccepts(t *testing.T) {
	tests := []struct {
		name string
		body string
	}{
		{"plain", chatBody(``)},
		{"bounds of every range", chatBody(`,"temperature":2,"top_p":0,"max_tokens":1,"presence_penalty":-2,"frequency_penalty":2,"n":1`)},
		{"text parts", `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"input_text","text":"b"}]}]}`},
		{"unknown fields kept out", chatBody(`,"logit_bias":{"1":2},"seed":3,"metadata":{"a":[[[1]]]}`)},
		{"escaped brackets do not nest", `{"model":"m","messages":[{"role":"user","content":"` + strings.Repeat(`[{`, 200) + `"}]}`},
		{"assistant without content", `{"model":"m","messages":[{"role":"user","content":"q"},{"role":"assistant","content":null}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := checkChat([]byte(tt.body), Limits{MaxPromptBytes: 1 << 20}); err != nil {
				t.Errorf("got %v; want no error", err)
			}
		})
	}
}

func TestLimitsDefaults(t *testing.T) {
	var zero Limits
	if zero.messages() != MaxMessages || zero.promptBytes() != MaxPromptBytes {
		t.Errorf("zero limits: got %d messages and %d bytes; want %d and %d",
			zero.messages(), zero.promptBytes(), MaxMessages, MaxPromptBytes)
	}
}

func TestDecodeJSONBodyTooLarge(t *testing.T) {
	body := chatBody(`,"user":"` + strings.Repeat("u", 2048) + `"`)
	r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(body))
	w := httptest.NewRecorder()
	r.Body = http.MaxBytesReader(w, r.Body, 1024)
	var req ChatRequest
	err := decodeJSON(r, &req)
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("got %v; want an *Error", err)
	}
	if e.Status != http.StatusRequestEntityTooLarge || e.Code != "request_too_large" || e.Type != TypeInvalidRequest {
		t.Errorf("got %d %s %s; want 413 invalid_request_error request_too_large", e.Status, e.Type, e.Code)
	}
}

// TestDecodeErrorsEchoNoInput checks that a JSON syntax or type error
// describes the problem without quoting the body back.
func TestDecodeErrorsEchoNoInput(t *testing.T) {
	const marker = "sk-pasted-secret-91c2"
	bodies := []string{
		`{"model":"` + marker + `",`,
		`{"model":"m","temperature":"` + marker + `"}`,
		`{"model":"m","messages":[{"role":"user","content":"x"}],"stream":"` + marker + `"}`,
		`{"model":"m","messages":[` + marker + `]}`,
	}
	for _, b := range bodies {
		err := checkChat([]byte(b), Limits{})
		if err == nil {
			t.Fatalf("body %q: got no error", b)
		}
		if strings.Contains(err.Error(), marker) {
			t.Errorf("error %q quotes the request body", err)
		}
	}
}
