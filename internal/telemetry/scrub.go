package telemetry

import (
	"context"
	"log/slog"
	"strconv"

	"github.com/getsentry/sentry-go"

	"github.com/grokproxy/grokproxy/internal/observe"
)

// reportKeys are the log attributes that an error report may carry, as
// tags. Anything else, prompts included, stays in the local log.
var reportKeys = map[string]bool{
	"request_id": true, "route": true, "model": true, "session_id": true, "upstream": true,
	"provider": true, "status": true, "attempt": true, "error": true, "outcome": true,
	"code": true, "type": true, "op": true,
}

// scrubEvent is the last look at an event before it leaves: it scrubs
// the text fields and drops the parts that could hold request data.
func scrubEvent(e *sentry.Event) *sentry.Event {
	e.Message = observe.Scrub(e.Message)
	for k, v := range e.Tags {
		if !reportKeys[k] && k != "trace_id" {
			delete(e.Tags, k)
			continue
		}
		e.Tags[k] = observe.Scrub(v)
	}
	for i := range e.Exception {
		e.Exception[i].Value = observe.Scrub(e.Exception[i].Value)
	}
	e.Request = nil
	e.User = sentry.User{}
	e.Breadcrumbs = nil
	e.Contexts = nil
	e.Modules = nil
	return e
}

// LogHandler returns a handler that passes every record to next and also
// reports Error records to Sentry, with the allowed attributes as tags.
// With reporting off it returns next.
func (t *Telemetry) LogHandler(next slog.Handler) slog.Handler {
	if !t.Reporting() {
		return next
	}
	return &reportHandler{next: next, t: t}
}

type reportHandler struct {
	next  slog.Handler
	t     *Telemetry
	bound []slog.Attr // attributes added with WithAttrs outside any group
	group bool        // a group was opened; later attributes are not tags
}

func (h *reportHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelError || h.next.Enabled(ctx, l)
}

func (h *reportHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		tags := make(map[string]string)
		add := func(a slog.Attr) bool {
			if reportKeys[a.Key] {
				tags[a.Key] = attrText(a.Value)
			}
			return true
		}
		for _, a := range h.bound {
			add(a)
		}
		if !h.group {
			r.Attrs(add)
		}
		h.t.Report(ctx, r.Level, r.Message, tags)
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func attrText(v slog.Value) string {
	v = v.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return v.String()
	case slog.KindInt64:
		return strconv.FormatInt(v.Int64(), 10)
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return err.Error()
		}
	}
	return v.String()
}

func (h *reportHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.next = h.next.WithAttrs(attrs)
	if !h.group {
		c.bound = append(append([]slog.Attr(nil), h.bound...), attrs...)
	}
	return &c
}

func (h *reportHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.next = h.next.WithGroup(name)
	c.group = true
	return &c
}
