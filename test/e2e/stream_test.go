package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/packages/param"

	"github.com/grokproxy/grokproxy/internal/emulator/grokweb"
	xaiemu "github.com/grokproxy/grokproxy/internal/emulator/xai"
)

// TestXAIStreamFlushesEachToken checks the same for the xai provider, whose
// stream flushes only when no further upstream event has arrived.
func TestXAIStreamFlushesEachToken(t *testing.T) {
	const delay = 40 * time.Millisecond
	m := startMixedGatewayWith(t, sqliteStore, false, xaiemu.Config{TokenDelay: delay, Chunks: 20}, xaiKeyA)
	client := m.client(userKey)
	stream := client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model:         "grok-4-fast",
		Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Stream slowly.")},
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: param.NewOpt(true)},
	})

	var arrivals []time.Time
	usage := int64(0)
	for stream.Next() {
		ch := stream.Current()
		if len(ch.Choices) > 0 && ch.Choices[0].Delta.Content != "" {
			arrivals = append(arrivals, time.Now())
		}
		usage += ch.Usage.TotalTokens
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	if len(arrivals) < 20 {
		t.Fatalf("got %d content chunks, want at least 20", len(arrivals))
	}
	if usage == 0 {
		t.Error("the stream ended without a usage chunk")
	}

	// Each gap between tokens must reach the client as a gap: no token
	// waits in the gateway's buffer for the next one.
	short := 0
	for i := 1; i < len(arrivals); i++ {
		if arrivals[i].Sub(arrivals[i-1]) < delay/2 {
			short++
		}
	}
	if short > 2 {
		t.Errorf("%d of %d chunks arrived less than %v after the one before; tokens were held back", short, len(arrivals)-1, delay/2)
	}
}

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
