package xai

import (
	"encoding/json"
	"reflect"
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
	if got[0] != '{' || string(got[1:9]) != `"message` {
		t.Errorf("body = %s; want sorted keys, messages first", got)
	}
}
