package xai

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/grokproxy/grokproxy/internal/upstream"
)

func TestRequestBodyKeepsCallerFields(t *testing.T) {
	body := `{ "model": "grok-4-fast", "stream": false,
		"messages": [ {"role": "user", "content": "a < b & \"c\""} ],
		"stream_options": {"include_usage": false}, "seed": 7, "tools": [] }`
	got, err := requestBody(upstream.ChatRequest{Model: "grok-4-fast-non-reasoning", Stream: true, Body: json.RawMessage(body)})
	if err != nil {
		t.Fatalf("requestBody: %v", err)
	}
	var sent map[string]any
	if err := json.Unmarshal(got, &sent); err != nil {
		t.Fatalf("the body is not JSON: %v\n%s", err, got)
	}
	want := map[string]any{
		"model":          "grok-4-fast-non-reasoning",
		"stream":         true,
		"stream_options": map[string]any{"include_usage": true},
		"messages":       []any{map[string]any{"role": "user", "content": `a < b & "c"`}},
		"seed":           7.0,
		"tools":          []any{},
	}
	if !reflect.DeepEqual(sent, want) {
		t.Errorf("body = %s\nwant the fields %v", got, want)
	}
	if !bytes.HasPrefix(got, []byte(`{"messages":`)) {
		t.Errorf("body = %s; want the caller's fields first, in their order", got)
	}
}

// FuzzRequestBody checks that the byte-level rewrite of a passed-through
// body means the same as decoding it, setting the gateway's fields and
// encoding it again.
func FuzzRequestBody(f *testing.F) {
	f.Add(`{"model":"m","messages":[{"role":"user","content":"hi"}],"seed":7}`, true)
	f.Add(`{ "stream" : true , "stream_options":{"include_usage":false}, "n": [1, {"a": "}"}] }`, false)
	f.Add(`{"x":"a\"b","y":-1.5e3,"z":null,"w":[[]],"v":{}}`, true)
	f.Add(`{}`, false)
	f.Add(`{"\u006dodel":"escaped key"}`, true)
	f.Fuzz(func(t *testing.T, body string, stream bool) {
		if !json.Valid([]byte(body)) {
			return
		}
		var fields map[string]json.RawMessage
		if json.Unmarshal([]byte(body), &fields) != nil || fields == nil {
			return
		}
		got, ok := rewriteBody([]byte(body), "grok-test", stream)
		if !ok {
			if !strings.Contains(body, "\\") {
				t.Fatalf("rewriteBody rejected the valid object %q", body)
			}
			return
		}
		want, err := requestBodyDecoded([]byte(body), "grok-test", stream)
		if err != nil {
			t.Fatalf("decoding path: %v", err)
		}
		var g, w map[string]any
		if err := json.Unmarshal(got, &g); err != nil {
			t.Fatalf("rewriteBody(%q) = %q, not JSON: %v", body, got, err)
		}
		if err := json.Unmarshal(want, &w); err != nil {
			t.Fatalf("decoding path gave %q: %v", want, err)
		}
		if !reflect.DeepEqual(g, w) {
			t.Fatalf("rewriteBody(%q) = %s\nwant the same as %s", body, got, want)
		}
	})
}
