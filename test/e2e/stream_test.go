package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/grokproxy/grokproxy/internal/emulator/grokweb"
)

// TestStreamFlushesEachToken checks that chunks reach the client as the
// upstream produces them, not all at once when the answer is complete.
func TestStreamFlushesEachToken(t *testing.T) {
	const delay = 40 * time.Millisecond
	g := startGateway(t, sqliteStore, withEmulator(func(c *grokweb.Config) {
		c.TokenDelay = delay
		c.Chunks = 20
	}))
	client := g.client(userKey)
	stream := client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model:    "grok-3",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Stream slowly.")},
	})
	var arrivals []time.Time
	for stream.Next() {
		ch := stream.Current()
		if len(ch.Choices) > 0 && ch.Choices[0].Delta.Content != "" {
			arrivals = append(arrivals, time.Now())
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	if len(arrivals) < 20 {
		t.Fatalf("got %d content chunks, want at least 20", len(arrivals))
	}
	// The upstream spaces 20 tokens by 40ms, so a gateway that buffered the
	// answer would deliver every chunk within a few milliseconds.
	spread := arrivals[len(arrivals)-1].Sub(arrivals[0])
	if spread < 10*delay {
		t.Errorf("chunks arrived within %v of each other; the stream was buffered", spread)
	}
}
