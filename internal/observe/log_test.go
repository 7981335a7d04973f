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

func TestRequestFieldsInContext(t *testing.T) {
	ctx := context.Background()
	if id, ip, scheme := observe.RequestID(ctx), observe.ClientIP(ctx), observe.Scheme(ctx); id != "" || ip != "" || scheme != "" {
		t.Fatalf("empty context: %q, %q, %q; want empty strings", id, ip, scheme)
	}
	ctx = observe.WithRequest(ctx, observe.Request{ID: "req_1", ClientIP: "192.0.2.1"})
	// Each With function changes its own field and keeps the others.
	ctx = observe.WithScheme(ctx, "https")
	ctx = observe.WithClientIP(ctx, "192.0.2.2")
	if got := observe.RequestID(ctx); got != "req_1" {
		t.Errorf("RequestID = %q; want req_1", got)
	}
	if got := observe.ClientIP(ctx); got != "192.0.2.2" {
		t.Errorf("ClientIP = %q; want 192.0.2.2", got)
	}
	if got := observe.Scheme(ctx); got != "https" {
		t.Errorf("Scheme = %q; want https", got)
	}
	// A parent context is not changed by a child's value.
	parent := observe.WithRequest(context.Background(), observe.Request{ID: "req_2"})
	_ = observe.WithRequestID(parent, "req_3")
	if got := observe.RequestID(parent); got != "req_2" {
		t.Errorf("parent RequestID = %q; want req_2", got)
	}
}
