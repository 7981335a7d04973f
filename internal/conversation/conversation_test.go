package conversation_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/grokproxy/grokproxy/internal/conversation"
	"github.com/grokproxy/grokproxy/internal/store"
	"github.com/grokproxy/grokproxy/internal/store/sqlite"
	"github.com/grokproxy/grokproxy/internal/upstream"
)

func openTracker(t *testing.T, key string) *conversation.Tracker {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "test.db"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return conversation.New(st, []byte(key))
}

func msgs(pairs ...string) []upstream.Message {
	var out []upstream.Message
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, upstream.Message{Role: pairs[i], Text: pairs[i+1]})
	}
	return out
}

func TestHashSeparatesFields(t *testing.T) {
	tr := openTracker(t, "k")
	base := tr.Hash("u1", "grok-4", msgs("user", "ab", "assistant", "c"))
	tests := []struct {
		name string
		hash string
	}{
		{"other user", tr.Hash("u2", "grok-4", msgs("user", "ab", "assistant", "c"))},
		{"other model", tr.Hash("u1", "grok-3", msgs("user", "ab", "assistant", "c"))},
		{"text moved between messages", tr.Hash("u1", "grok-4", msgs("user", "a", "assistant", "bc"))},
		{"other role", tr.Hash("u1", "grok-4", msgs("system", "ab", "assistant", "c"))},
		{"extra space", tr.Hash("u1", "grok-4", msgs("user", "ab ", "assistant", "c"))},
		{"with image", tr.Hash("u1", "grok-4", []upstream.Message{
			{Role: "user", Text: "ab", Images: []upstream.Image{{MediaType: "image/png", Data: []byte{1}}}},
			{Role: "assistant", Text: "c"}})},
		{"other key", openTracker(t, "other").Hash("u1", "grok-4", msgs("user", "ab", "assistant", "c"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.hash == base {
				t.Errorf("hash equals the base history's hash %s", base)
			}
		})
	}
	if again := tr.Hash("u1", "grok-4", msgs("user", "ab", "assistant", "c")); again != base {
		t.Errorf("same history hashed to %s then %s", base, again)
	}
}

func TestSaveThenContinue(t *testing.T) {
	ctx := context.Background()
	tr := openTracker(t, "k")
	first := msgs("system", "Be brief.", "user", "Hi")
	if err := tr.Save(ctx, store.Conversation{}, "u1", "grok-4", first,
		conversation.Answer{SessionID: "s1", UpstreamID: "conv-1", ResponseID: "r1", Text: "Hello!"}); err != nil {
		t.Fatalf("save: %v", err)
	}

	second := msgs("system", "Be brief.", "user", "Hi", "assistant", "Hello!", "user", "How are you?")
	m, ok, err := tr.Lookup(ctx, "u1", "grok-4", second)
	if err != nil || !ok {
		t.Fatalf("lookup = %v, %v; want a match", ok, err)
	}
	c := m.Conversation
	if c.SessionID != "s1" || c.UpstreamID != "conv-1" || c.LastResponseID != "r1" {
		t.Errorf("match = %+v; want session s1, conversation conv-1, response r1", c)
	}
	if len(m.NewTurn) != 1 || m.NewTurn[0].Text != "How are you?" {
		t.Errorf("new turn = %+v; want the last user message", m.NewTurn)
	}

	// The follow-up's answer moves the same record on to the longer history.
	if err := tr.Save(ctx, c, "u1", "grok-4", second,
		conversation.Answer{SessionID: "s1", UpstreamID: "conv-1", ResponseID: "r2", Text: "Fine."}); err != nil {
		t.Fatalf("save follow-up: %v", err)
	}
	third := append(second, msgs("assistant", "Fine.", "user", "Bye")...)
	m3, ok, err := tr.Lookup(ctx, "u1", "grok-4", third)
	if err != nil || !ok {
		t.Fatalf("third lookup = %v, %v; want a match", ok, err)
	}
	if m3.Conversation.ID != c.ID || m3.Conversation.LastResponseID != "r2" {
		t.Errorf("third match = %+v; want record %s with response r2", m3.Conversation, c.ID)
	}
	if _, ok, _ := tr.Lookup(ctx, "u1", "grok-4", second); ok {
		t.Error("the older history still matches after the conversation moved on")
	}
}

func TestLookupMisses(t *testing.T) {
	ctx := context.Background()
	tr := openTracker(t, "k")
	if err := tr.Save(ctx, store.Conversation{}, "u1", "grok-4", msgs("user", "Hi"),
		conversation.Answer{SessionID: "s1", UpstreamID: "conv-1", ResponseID: "r1", Text: "Hello!"}); err != nil {
		t.Fatalf("save: %v", err)
	}
	tests := []struct {
		name    string
		user    string
		model   string
		history []upstream.Message
	}{
		{"another user", "u2", "grok-4", msgs("user", "Hi", "assistant", "Hello!", "user", "More")},
		{"no user id", "", "grok-4", msgs("user", "Hi", "assistant", "Hello!", "user", "More")},
		{"another model", "u1", "grok-3", msgs("user", "Hi", "assistant", "Hello!", "user", "More")},
		{"edited question", "u1", "grok-4", msgs("user", "Hi!", "assistant", "Hello!", "user", "More")},
		{"edited answer", "u1", "grok-4", msgs("user", "Hi", "assistant", "Hello", "user", "More")},
		{"ends with an assistant turn", "u1", "grok-4", msgs("user", "Hi", "assistant", "Hello!")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if m, ok, err := tr.Lookup(ctx, tt.user, tt.model, tt.history); ok || err != nil {
				t.Errorf("lookup = %+v, %v, %v; want no match", m, ok, err)
			}
		})
	}
}

func TestSaveSkipsIncompleteAnswers(t *testing.T) {
	ctx := context.Background()
	tr := openTracker(t, "k")
	history := msgs("user", "Hi")
	for _, a := range []conversation.Answer{
		{SessionID: "s1", UpstreamID: "conv-1", ResponseID: "r1"},
		{SessionID: "s1", ResponseID: "r1", Text: "Hello!"},
		{SessionID: "s1", UpstreamID: "conv-1", Text: "Hello!"},
	} {
		if err := tr.Save(ctx, store.Conversation{}, "u1", "grok-4", history, a); err != nil {
			t.Fatalf("save %+v: %v", a, err)
		}
		next := append(msgs("user", "Hi", "assistant", a.Text), msgs("user", "More")...)
		if _, ok, _ := tr.Lookup(ctx, "u1", "grok-4", next); ok {
			t.Errorf("answer %+v was saved; want it skipped", a)
		}
	}
}
