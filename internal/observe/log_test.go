package observe_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/grokproxy/grokproxy/internal/observe"
)

func TestLoggerAddsRequestIDFromContext(t *testing.T) {
	var buf bytes.Buffer
	log := observe.NewLogger(&buf, "info", "json")
	ctx := observe.WithRequestID(context.Background(), "req_ctx_1")

	log.InfoContext(ctx, "from context")
	log.With("request_id", "req_bound").InfoContext(ctx, "already bound")
	log.InfoContext(ctx, "given", "request_id", "req_given")
	log.Info("no context")

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("got %d lines: %s", len(lines), buf.String())
	}
	checks := []struct{ want, line string }{
		{`"request_id":"req_ctx_1"`, lines[0]},
		{`"request_id":"req_bound"`, lines[1]},
		{`"request_id":"req_given"`, lines[2]},
	}
	for _, c := range checks {
		if !strings.Contains(c.line, c.want) || strings.Count(c.line, "request_id") != 1 {
			t.Errorf("line %s: want exactly one %s", c.line, c.want)
		}
	}
	if strings.Contains(lines[3], "request_id") {
		t.Errorf("a record without a request context got a request id: %s", lines[3])
	}
}
