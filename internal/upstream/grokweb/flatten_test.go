package grokweb_test

import (
	"testing"

	"github.com/grokproxy/grokproxy/internal/upstream"
	"github.com/grokproxy/grokproxy/internal/upstream/grokweb"
)

func TestFlattenKeepsEveryTurnInOrder(t *testing.T) {
	msgs := []upstream.Message{
		{Role: "system", Text: "Answer briefly."},
		{Role: "user", Text: "What is 2+2?"},
		{Role: "assistant", Text: "4"},
		{Role: "tool", ToolCallID: "call_1", Text: `{"result": 4}`},
		{Role: "assistant", Text: ""},
		{Role: "user", Text: "  And 3+3?  "},
	}
	want := "[system]\nAnswer briefly.\n\n" +
		"[user]\nWhat is 2+2?\n\n" +
		"[assistant]\n4\n\n" +
		"[tool result for call_1]\n{\"result\": 4}\n\n" +
		"[user]\nAnd 3+3?"
	if got := grokweb.Flatten(msgs); got != want {
		t.Errorf("Flatten =\n%s\nwant\n%s", got, want)
	}
}

func TestFlattenToolWithoutID(t *testing.T) {
	got := grokweb.Flatten([]upstream.Message{{Role: "tool", Name: "lookup", Text: "x"}})
	if want := "[tool result for lookup]\nx"; got != want {
		t.Errorf("Flatten = %q; want %q", got, want)
	}
}

func TestFlattenEmpty(t *testing.T) {
	if got := grokweb.Flatten(nil); got != "" {
		t.Errorf("Flatten(nil) = %q; want empty", got)
	}
}
