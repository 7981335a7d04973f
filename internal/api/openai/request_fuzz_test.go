package openai

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"
)

// FuzzDecodeChat checks that no body makes request decoding panic, that
// every rejection is a 400 in OpenAI's format with a code, and that an
// accepted request has what the handler relies on.
func FuzzDecodeChat(f *testing.F) {
	for _, seed := range []string{
		chatBody(``),
		chatBody(`,"stream":true,"stream_options":{"include_usage":true},"temperature":0.7`),
		`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}}]}]}`,
		`{"model":"m","messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"c"}]}],"tools":[]}`,
		`[[[[{"model":1}]]]]`,
		"{\"model\":\"\xc3\x28\"}",
	} {
		f.Add([]byte(seed))
	}
	lim := Limits{MaxMessages: 64, MaxPromptBytes: 1 << 16}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req ChatRequest
		err := decodeBody(body, &req)
		if err == nil {
			err = req.validate(lim)
		}
		var msgs int
		if err == nil {
			m, uerr := req.upstreamMessages(lim)
			err, msgs = uerr, len(m)
		}
		if err == nil {
			if req.Model == "" || msgs == 0 || msgs > lim.MaxMessages {
				t.Fatalf("accepted %q with model %q and %d messages", body, req.Model, msgs)
			}
			return
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("body %q: got %T %v; want an *Error", body, err, err)
		}
		if e.Status != http.StatusBadRequest || e.Type != TypeInvalidRequest || e.Code == "" {
			t.Fatalf("body %q: got %d %s %q; want a 400 invalid_request_error with a code", body, e.Status, e.Type, e.Code)
		}
		if !json.Valid(e.Body("req_1")) {
			t.Fatalf("body %q: error body %q is not JSON", body, e.Body("req_1"))
		}
	})
}

// FuzzMessageText checks that the text of a string content, which
// convertContent takes without a JSON decoder when it has no escapes, is
// what json.Unmarshal gives.
func FuzzMessageText(f *testing.F) {
	for _, seed := range []string{`"hello"`, `"a\"b"`, `""`, `"é ü"`, `"tab\tx"`, ` "x" `, `"\u00e9"`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, content []byte) {
		body := []byte(`{"model":"m","messages":[{"role":"user","content":` + string(content) + `}]}`)
		var req ChatRequest
		if decodeBody(body, &req) != nil || len(req.Messages) != 1 {
			return
		}
		// Only string contents: numbers, arrays and objects take other paths.
		var text string
		if json.Unmarshal(req.Messages[0].Content, &text) != nil {
			return
		}
		msg, err := convertContent("messages[0]", req.Messages[0])
		if err != nil {
			t.Fatalf("content %q: %v", content, err)
		}
		if msg.Text != text {
			t.Fatalf("content %q: text %q; json.Unmarshal gives %q", content, msg.Text, text)
		}
	})
}
