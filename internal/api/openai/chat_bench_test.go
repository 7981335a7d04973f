package openai

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
)

// benchBody is a typical small chat request: a system prompt, one earlier
// turn and a question, streamed with usage.
var benchBody = []byte(`{"model":"grok-4-fast","stream":true,"stream_options":{"include_usage":true},` +
	`"temperature":0.7,"max_tokens":512,"messages":[` +
	`{"role":"system","content":"You are a helpful assistant who answers briefly."},` +
	`{"role":"user","content":"What is the capital of France?"},` +
	`{"role":"assistant","content":"Paris."},` +
	`{"role":"user","content":[{"type":"text","text":"And how many people live there?"}]}]}`)

// BenchmarkDecodeChatRequest measures reading, validating and converting
// one chat request body, as every chat request does before it reaches the
// pool.
func BenchmarkDecodeChatRequest(b *testing.B) {
	lim := Limits{}
	b.ReportAllocs()
	b.SetBytes(int64(len(benchBody)))
	for b.Loop() {
		call := &chatCall{}
		r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", bytes.NewReader(benchBody))
		if err := call.decode(r); err != nil {
			b.Fatalf("decode: %v", err)
		}
		if err := call.req.validate(lim); err != nil {
			b.Fatalf("validate: %v", err)
		}
		msgs, err := call.req.upstreamMessages(lim)
		if err != nil || len(msgs) != 4 {
			b.Fatalf("upstreamMessages = %d messages, %v; want 4", len(msgs), err)
		}
	}
}

// discardWriter is a ResponseWriter that drops what it is given, so the
// benchmark measures encoding rather than a recorder's buffer growth. It
// keeps the size of the last write.
type discardWriter struct {
	h    http.Header
	last int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { w.last = len(p); return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}
func (w *discardWriter) Flush()                      {}

// BenchmarkSSEChunk measures turning one text delta into a server-sent
// event and flushing it, the per-token cost of a stream.
func BenchmarkSSEChunk(b *testing.B) {
	call := &chatCall{id: "chatcmpl-0123456789abcdef", created: 1739750400, req: ChatRequest{Model: "grok-4-fast"}}
	w := &discardWriter{h: make(http.Header)}
	sse := newSSEWriter(w)
	sse.start()
	text := "the next few words "
	b.ReportAllocs()
	for b.Loop() {
		if err := sse.event(call.chunk(delta{Content: &text}, nil)); err != nil {
			b.Fatalf("event: %v", err)
		}
	}
	if w.last < 100 {
		b.Fatalf("one event wrote %d bytes; want a whole chunk", w.last)
	}
}
