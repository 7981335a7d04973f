package grokweb

import (
	"context"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/grokproxy/grokproxy/internal/upstream"
)

// frameList is a frameSource over frames decoded in advance.
type frameList struct{ frames []frame }

func (l *frameList) next() (frame, error) {
	if len(l.frames) == 0 {
		return frame{}, io.EOF
	}
	f := l.frames[0]
	l.frames = l.frames[1:]
	return f, nil
}

func (l *frameList) close() error { return nil }

func gatewayFixture(t testing.TB) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "gateway.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func TestGatewayMessagesMapToEvents(t *testing.T) {
	var frames []frame
	for _, line := range gatewayFixture(t) {
		m, err := parseWSMessage([]byte(line))
		if err != nil {
			t.Fatalf("parseWSMessage(%s): %v", line, err)
		}
		frames = append(frames, m.frames...)
	}
	ctx, cancel := context.WithCancel(context.Background())
	assets, _ := url.Parse("http://assets.example")
	s := &stream{ctx: ctx, cancel: cancel, src: &frameList{frames: frames}, assets: assets,
		images: make(map[string]bool)}
	events, err := collect(t, s)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}

	if got := texts(events, upstream.EventReasoning); got != "Checking sources." {
		t.Errorf("reasoning = %q; want only the analysis channel text", got)
	}
	want := "The newest release is on go.dev [[1]](https://go.dev/doc/devel/release)."
	if got := texts(events, upstream.EventText); got != want {
		t.Errorf("text = %q; want %q", got, want)
	}
	var images []string
	for _, ev := range events {
		if ev.Kind == upstream.EventImage {
			images = append(images, ev.Image.URL)
		}
	}
	if len(images) != 1 || images[0] != "http://assets.example/users/u-42/generated/a1b2/image.jpg" {
		t.Errorf("images = %v; want the one finished card image on the asset origin", images)
	}
	done := events[len(events)-1]
	if done.Kind != upstream.EventDone || done.ConversationID != "c-ws-1" || done.ResponseID != "m-ws-1" ||
		done.ParentResponseID != "u-ws-1" || done.Model != "grok-4-auto" {
		t.Errorf("done = %+v; want conversation c-ws-1, response m-ws-1, parent u-ws-1, model grok-4-auto", done)
	}
}

func TestGatewayErrors(t *testing.T) {
	tests := []struct {
		name, line string
		want       upstream.Outcome
	}{
		{"error code 8", `{"type":"error","event":{"error":{"code":8,"message":"Too many requests"}}}`, upstream.OutcomeRateLimited},
		{"err_code string", `{"type":"error","event":{"error":{"err_code":"rate_limit_exceeded","err_msg":"slow"}}}`, upstream.OutcomeRateLimited},
		{"stream error", `{"type":"response.grok.output","event":{"output":{"stream_error":{"code":7,"message":"rejected"}}}}`, upstream.OutcomeEgressRejected},
		{"failed response", `{"type":"response.done","event":{"response":{"id":"m","status":"failed"}}}`, upstream.OutcomeUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := parseWSMessage([]byte(tt.line))
			if err != nil {
				t.Fatalf("parseWSMessage: %v", err)
			}
			if len(m.frames) != 1 || m.frames[0].Error == nil {
				t.Fatalf("frames = %+v; want one error frame", m.frames)
			}
			if got := classifyStreamError(m.frames[0].Error, false, nil).Outcome; got != tt.want {
				t.Errorf("outcome = %q; want %q", got, tt.want)
			}
		})
	}
}

func FuzzParseWSMessage(f *testing.F) {
	for _, line := range gatewayFixture(f) {
		f.Add([]byte(line))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseWSMessage(data)
		if err != nil {
			return
		}
		for _, fr := range m.frames {
			set := 0
			for _, p := range []bool{fr.Conversation != nil, fr.Response != nil, fr.Title != nil, fr.Error != nil} {
				if p {
					set++
				}
			}
			if set != 1 {
				t.Errorf("frame from %q has %d parts set; want 1", data, set)
			}
		}
		if m.typ == wsError && len(m.frames) != 1 {
			t.Errorf("error message %q gave %d frames; want 1", data, len(m.frames))
		}
	})
}
