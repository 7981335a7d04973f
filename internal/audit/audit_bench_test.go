package audit_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/grokproxy/grokproxy/internal/audit"
	"github.com/grokproxy/grokproxy/internal/store"
	"github.com/grokproxy/grokproxy/internal/store/postgres"
	"github.com/grokproxy/grokproxy/internal/store/sqlite"
)

// BenchmarkBatchInsert measures one store write of a full audit batch
// (audit.DefaultBatchSize records of a short chat each), the work the
// writer does per flush. It reports rows/s. The PostgreSQL case needs the
// test database; it skips without one unless CI is "true".
func BenchmarkBatchInsert(b *testing.B) {
	stores := []struct {
		name string
		open func(testing.TB) store.Store
	}{
		{"sqlite", func(tb testing.TB) store.Store { return sqlite.OpenTest(tb) }},
		{"postgres", func(tb testing.TB) store.Store { return postgres.OpenTest(tb) }},
	}
	for _, s := range stores {
		b.Run(s.name, func(b *testing.B) {
			st := s.open(b)
			ctx := context.Background()
			batch := make([]store.Generation, audit.DefaultBatchSize)
			written := 0
			b.ReportAllocs()
			for b.Loop() {
				for i := range batch {
					batch[i] = benchGeneration()
				}
				if err := st.InsertGenerations(ctx, batch); err != nil {
					b.Fatalf("InsertGenerations: %v", err)
				}
				written += len(batch)
			}
			b.ReportMetric(float64(written)/b.Elapsed().Seconds(), "rows/s")
			n, err := st.CountGenerations(ctx)
			if err != nil || n != int64(written) {
				b.Fatalf("CountGenerations = %d, %v; want %d", n, err, written)
			}
		})
	}
}

// benchGeneration returns the record of a short, successful streamed chat.
func benchGeneration() store.Generation {
	id := audit.NewID()
	return store.Generation{
		ID: id, RequestID: "req_" + id, UserID: "user-bench", KeyID: "key-bench", SessionID: "session-bench",
		Provider: store.ProviderXAI, Model: "grok-4-fast",
		Prompt:       "What is the capital of France?",
		Response:     strings.Repeat("Paris is the capital of France. ", 4),
		FinishReason: "stop", PromptTokens: 12, CompletionTokens: 28, Status: 200,
		Attempts:  []store.Attempt{{SessionID: "session-bench", Outcome: "ok", LatencyMS: 420}},
		LatencyMS: 450, FirstTokenMS: 120, ClientIP: "127.0.0.1", Stream: true,
		CreatedAt: time.Now().UTC(),
	}
}
