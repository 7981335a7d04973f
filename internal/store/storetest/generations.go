package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/grokproxy/grokproxy/internal/store"
)

func newGeneration(id, userID string, created time.Time) store.Generation {
	return store.Generation{
		ID: id, RequestID: "req-" + id, UserID: userID, KeyID: "key-1", SessionID: "s1",
		ConversationID: "c1", Provider: store.ProviderGrok, Model: "grok-4",
		Prompt: "hello " + id, Response: "hi", Reasoning: "thinking",
		FinishReason: "stop", PromptTokens: 12, CompletionTokens: 3, ReasoningTokens: 7,
		TokensEstimated: true, Status: 200,
		Attempts: []store.Attempt{
			{SessionID: "s0", Outcome: "rate_limited", Status: 429, LatencyMS: 40},
			{SessionID: "s1", Outcome: "ok", Status: 200, LatencyMS: 900},
		},
		LatencyMS: 950, FirstTokenMS: 120, ClientIP: "127.0.0.1", Stream: true,
		CreatedAt: created,
	}
}

func genIDs(list []store.Generation) []string {
	ids := []string{}
	for _, g := range list {
		ids = append(ids, g.ID)
	}
	return ids
}

func testGenerationRoundTrip(t *testing.T, s store.Store) {
	g := newGeneration("g1", "u1", at(0))
	crypted := newGeneration("g2", "u1", at(time.Second))
	// Ciphertext is arbitrary bytes, including NUL and invalid UTF-8.
	crypted.Prompt, crypted.Response, crypted.Reasoning = "v1:k1:\x00\xff\xfe", "\x00", ""
	crypted.ContentCrypted = true
	failed := store.Generation{ID: "g3", UserID: "u1", Status: 502, ErrorType: "unavailable",
		CreatedAt: at(2 * time.Second)}
	must(t, "insert", s.InsertGenerations(ctx(t), []store.Generation{g, crypted, failed}))

	list, err := s.Generations(ctx(t), store.GenerationFilter{})
	must(t, "list", err)
	mustEqual(t, "generations newest first", list,
		[]store.Generation{failed, crypted, g})
}

func testGenerationIdempotent(t *testing.T, s store.Store) {
	must(t, "insert empty", s.InsertGenerations(ctx(t), nil))
	batch := []store.Generation{
		newGeneration("g1", "u1", at(0)),
		newGeneration("g2", "u1", at(time.Second)),
	}
	must(t, "insert", s.InsertGenerations(ctx(t), batch))
	changed := newGeneration("g1", "u1", at(0))
	changed.Response = "replayed"
	must(t, "replay", s.InsertGenerations(ctx(t), []store.Generation{
		changed, batch[1], newGeneration("g3", "u1", at(2*time.Second)),
	}))

	n, err := s.CountGenerations(ctx(t))
	must(t, "count", err)
	mustEqual(t, "rows after replay", n, int64(3))
	list, err := s.Generations(ctx(t), store.GenerationFilter{})
	must(t, "list", err)
	mustEqual(t, "ids", genIDs(list), []string{"g3", "g2", "g1"})
	mustEqual(t, "first write kept", list[2].Response, "hi")

	noID := []store.Generation{{UserID: "u2", Status: 200}}
	must(t, "insert without id", s.InsertGenerations(ctx(t), noID))
	if noID[0].ID == "" || noID[0].CreatedAt.IsZero() {
		t.Fatalf("insert left defaults unset: %+v", noID[0])
	}
}

func testGenerationLargeBatch(t *testing.T, s store.Store) {
	// More rows than one multi-row INSERT may carry in either backend.
	const rows = 3000
	batch := make([]store.Generation, rows)
	for i := range batch {
		batch[i] = newGeneration(fmt.Sprintf("g%05d", i), "u1", at(time.Duration(i)*time.Millisecond))
	}
	must(t, "insert", s.InsertGenerations(ctx(t), batch))
	must(t, "replay", s.InsertGenerations(ctx(t), batch))
	n, err := s.CountGenerations(ctx(t))
	must(t, "count", err)
	mustEqual(t, "rows", n, int64(rows))
}

func testGenerationList(t *testing.T, s store.Store) {
	var batch []store.Generation
	for i := range 120 {
		user := "u1"
		if i%3 == 0 {
			user = "u2"
		}
		batch = append(batch, newGeneration(fmt.Sprintf("g%03d", i), user,
			at(time.Duration(i)*time.Second)))
	}
	must(t, "insert", s.InsertGenerations(ctx(t), batch))

	list, err := s.Generations(ctx(t), store.GenerationFilter{})
	must(t, "list default", err)
	mustEqual(t, "default page size", len(list), 100)
	mustEqual(t, "newest", list[0].ID, "g119")

	list, err = s.Generations(ctx(t), store.GenerationFilter{UserID: "u2", Limit: 3})
	must(t, "list u2", err)
	mustEqual(t, "u2 newest three", genIDs(list), []string{"g117", "g114", "g111"})

	list, err = s.Generations(ctx(t), store.GenerationFilter{Before: at(3 * time.Second)})
	must(t, "list before", err)
	mustEqual(t, "before 3s", genIDs(list), []string{"g002", "g001", "g000"})

	list, err = s.Generations(ctx(t), store.GenerationFilter{UserID: "u1",
		Before: at(5 * time.Second), Limit: 2})
	must(t, "list u1 before", err)
	mustEqual(t, "u1 before 5s", genIDs(list), []string{"g004", "g002"})

	n, err := s.CountGenerations(ctx(t))
	must(t, "count", err)
	mustEqual(t, "count", n, int64(120))
}
