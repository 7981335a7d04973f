package xai

import (
	"context"
	"io"
	"testing"

	"github.com/grokproxy/grokproxy/internal/upstream"
)

// chunkReader returns one part per Read and then blocks the test: reading
// past the parts means the stream waited for the network.
type chunkReader struct {
	t     *testing.T
	parts []string
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.parts) == 0 {
		r.t.Fatal("the stream read past the data that had arrived")
	}
	n := copy(p, r.parts[0])
	r.parts[0] = r.parts[0][n:]
	if r.parts[0] == "" {
		r.parts = r.parts[1:]
	}
	return n, nil
}

func (r *chunkReader) Close() error { return nil }

func TestSSEStreamReady(t *testing.T) {
	const one = `data: {"id":"c1","choices":[{"index":0,"delta":{"content":"a"}}]}` + "\n\n"
	const two = `data: {"id":"c1","choices":[{"index":0,"delta":{"content":"b"}}]}` + "\n\n"
	// Two events arrive in one read, then half of a third.
	body := &chunkReader{t: t, parts: []string{one + ": keep-alive\n\n" + two + `data: {"id"`}}
	s := newSSEStream(context.Background(), body)

	if s.Ready() {
		t.Fatal("Ready = true before anything was read; want false")
	}
	texts := []string{}
	for len(texts) < 2 {
		ev, err := s.Next()
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		if ev.Kind != upstream.EventText {
			continue
		}
		texts = append(texts, ev.Text)
		if len(texts) == 1 && !s.Ready() {
			t.Fatal("Ready = false with a whole data line buffered; want true")
		}
	}
	if texts[0] != "a" || texts[1] != "b" {
		t.Fatalf("texts = %q; want a, b", texts)
	}
	if s.Ready() {
		t.Fatal("Ready = true with only half a line buffered; want false")
	}
	body.parts = []string{`:"c1","choices":[]}` + "\n\ndata: [DONE]\n\n"}
	if _, err := s.Next(); err != nil {
		t.Fatalf("Next after the rest arrived: %v", err)
	}
	if !s.Ready() {
		t.Fatal("Ready = false at the end of the stream; want true")
	}
	for {
		if _, err := s.Next(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("Next: %v", err)
		}
	}
}
