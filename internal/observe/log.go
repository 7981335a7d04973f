// Package observe sets up logging, request ids and Prometheus metrics.
package observe

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"strings"
)

// NewLogger returns a logger that writes JSON or text records at level to w,
// through the scrubbing handler. When w is a *LogWriter, records of level
// warn and above flush it.
func NewLogger(w io.Writer, level, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: parseLevel(level)}
	var h slog.Handler
	if format == "text" {
		h = slog.NewTextHandler(w, opts)
	} else {
		h = slog.NewJSONHandler(w, opts)
	}
	if lw, ok := w.(*LogWriter); ok {
		h = flushHandler{next: h, w: lw}
	}
	ch := contextHandler{next: NewScrubHandler(h)}
	if format != "text" {
		ch.access = &accessWriter{w: w}
	}
	return slog.New(ch)
}

// contextHandler adds the request id carried by the context to every
// record logged with that context, unless the logger already has one.
type contextHandler struct {
	next  slog.Handler
	bound bool // a request_id attribute was added with WithAttrs
	// access writes LogAccess lines straight to the output; nil when the
	// format is not JSON or the logger has attributes or groups of its
	// own.
	access *accessWriter
}

// NewContextHandler wraps next so that a record logged with a request's
// context (slog's *Context methods and LogAttrs) carries its request_id.
func NewContextHandler(next slog.Handler) slog.Handler { return contextHandler{next: next} }

func (h contextHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h contextHandler) Handle(ctx context.Context, r slog.Record) error {
	if h.bound || ctx == nil {
		return h.next.Handle(ctx, r)
	}
	id := RequestID(ctx)
	if id == "" || hasAttr(r, "request_id") {
		return h.next.Handle(ctx, r)
	}
	r = r.Clone()
	r.AddAttrs(slog.String("request_id", id))
	return h.next.Handle(ctx, r)
}

func (h contextHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	bound := h.bound
	for _, a := range attrs {
		bound = bound || a.Key == "request_id"
	}
	return contextHandler{next: h.next.WithAttrs(attrs), bound: bound}
}

func (h contextHandler) WithGroup(name string) slog.Handler {
	return contextHandler{next: h.next.WithGroup(name), bound: h.bound}
}

func hasAttr(r slog.Record, key string) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		found = a.Key == key
		return !found
	})
	return found
}

func parseLevel(s string) slog.Level {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// requestKey carries a *Request. One context value holds all the fields,
// so that a request costs one context layer, not one per field.
type requestKey struct{}

// Request is the gateway's view of a request before handling it: its id,
// client address and scheme.
type Request struct {
	ID       string // request id, echoed in X-Request-ID
	ClientIP string // client address, as decided by the trusted-proxy rules
	Scheme   string // URL scheme reported by a trusted proxy, or ""
}

// WithRequest returns a context that carries r.
func WithRequest(ctx context.Context, r Request) context.Context {
	return context.WithValue(ctx, requestKey{}, &r)
}

// requestOf returns the Request carried by ctx, or the zero Request.
func requestOf(ctx context.Context) Request {
	if r, ok := ctx.Value(requestKey{}).(*Request); ok {
		return *r
	}
	return Request{}
}

// WithRequestID returns a context that carries the request id, and the
// other fields that ctx carries.
func WithRequestID(ctx context.Context, id string) context.Context {
	r := requestOf(ctx)
	r.ID = id
	return WithRequest(ctx, r)
}

// RequestID returns the request id carried by ctx, or "".
func RequestID(ctx context.Context) string { return requestOf(ctx).ID }

// NewRequestID returns a random request id of the form "req_" + 24 hex
// characters.
func NewRequestID() string {
	var b [12]byte
	rand.Read(b[:])
	return "req_" + hex.EncodeToString(b[:])
}

// ValidRequestID reports whether a client-supplied X-Request-ID may be
// used as is: 1 to 128 characters of letters, digits and -_.:
func ValidRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, c := range id {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '_' || c == '.' || c == ':'
		if !ok {
			return false
		}
	}
	return true
}

// WithClientIP returns a context that carries the client's address, as
// decided by the trusted-proxy rules, and the other fields that ctx
// carries.
func WithClientIP(ctx context.Context, ip string) context.Context {
	r := requestOf(ctx)
	r.ClientIP = ip
	return WithRequest(ctx, r)
}

// ClientIP returns the client address carried by ctx, or "".
func ClientIP(ctx context.Context) string { return requestOf(ctx).ClientIP }

// WithScheme returns a context that carries the URL scheme the client
// used, as reported by a trusted proxy in X-Forwarded-Proto, and the other
// fields that ctx carries.
func WithScheme(ctx context.Context, scheme string) context.Context {
	r := requestOf(ctx)
	r.Scheme = scheme
	return WithRequest(ctx, r)
}

// Scheme returns the scheme set by WithScheme, or "" when none was.
func Scheme(ctx context.Context) string { return requestOf(ctx).Scheme }
