// Package telemetry sends optional error reports to Sentry and request
// traces to an OpenTelemetry collector over OTLP/HTTP. Both are off unless
// configured.
//
// Nothing that leaves the process contains a secret or a prompt. A trace
// span contains the method, the route label, the status and the request
// id. An error report contains a scrubbed message and a fixed set of
// attributes. Headers, query strings and bodies are never sent.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/getsentry/sentry-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/grokproxy/grokproxy/internal/observe"
	"github.com/grokproxy/grokproxy/internal/secret"
)

// Config selects what telemetry to send. The zero Config sends nothing.
type Config struct {
	// SentryDSN turns on error reports; empty leaves them off.
	SentryDSN secret.Value
	// OTLPEndpoint is the base URL of an OTLP/HTTP collector, such as
	// http://127.0.0.1:4318; traces go to its /v1/traces path. Empty
	// leaves tracing off.
	OTLPEndpoint string
	ServiceName  string // service.name of spans; default "grokproxy"
	Version      string // service.version and the Sentry release
	Environment  string // Sentry environment; empty leaves it unset
}

// Telemetry is the running error reporter and tracer. A nil *Telemetry is
// valid and does nothing. It is safe for concurrent use.
type Telemetry struct {
	sentry     *sentry.Client
	tracer     trace.Tracer
	provider   *sdktrace.TracerProvider
	propagator propagation.TextMapPropagator
}

// New starts what cfg turns on. It returns nil, and no error, when cfg
// turns on nothing. It sends nothing until the first report or span.
func New(cfg Config) (*Telemetry, error) {
	if cfg.SentryDSN.Empty() && cfg.OTLPEndpoint == "" {
		return nil, nil
	}
	if cfg.ServiceName == "" {
		cfg.ServiceName = "grokproxy"
	}
	t := &Telemetry{propagator: propagation.TraceContext{}}
	if !cfg.SentryDSN.Empty() {
		c, err := newSentry(cfg)
		if err != nil {
			return nil, err
		}
		t.sentry = c
	}
	if cfg.OTLPEndpoint != "" {
		if err := t.startTracing(cfg); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func newSentry(cfg Config) (*sentry.Client, error) {
	c, err := sentry.NewClient(sentry.ClientOptions{
		Dsn:                    cfg.SentryDSN.Reveal(),
		Release:                cfg.Version,
		Environment:            cfg.Environment,
		SendDefaultPII:         false,
		DisableTelemetryBuffer: true,
		DisableClientReports:   true,
		DisableMetrics:         true,
		// No integration: they would add the host's modules and
		// environment, which the reports do not need.
		Integrations: func([]sentry.Integration) []sentry.Integration { return nil },
		BeforeSend:   func(e *sentry.Event, _ *sentry.EventHint) *sentry.Event { return scrubEvent(e) },
	})
	if err != nil {
		// The error may quote the DSN, whose key is a secret.
		return nil, errors.New("SENTRY_DSN: not a valid DSN")
	}
	return c, nil
}

func (t *Telemetry) startTracing(cfg Config) error {
	endpoint, err := tracesURL(cfg.OTLPEndpoint)
	if err != nil {
		return err
	}
	exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(endpoint))
	if err != nil {
		return fmt.Errorf("OTEL_EXPORTER_OTLP_ENDPOINT: %w", err)
	}
	res := resource.NewSchemaless(
		attribute.String("service.name", cfg.ServiceName),
		attribute.String("service.version", cfg.Version),
	)
	t.provider = sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	t.tracer = t.provider.Tracer("github.com/grokproxy/grokproxy")
	return nil
}

// tracesURL returns the OTLP/HTTP traces URL under base.
func tracesURL(base string) (string, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("OTEL_EXPORTER_OTLP_ENDPOINT: %q is not an http(s) URL", base)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/traces"
	return u.String(), nil
}

// Tracing reports whether spans are exported.
func (t *Telemetry) Tracing() bool { return t != nil && t.tracer != nil }

// Reporting reports whether errors are sent to Sentry.
func (t *Telemetry) Reporting() bool { return t != nil && t.sentry != nil }

// Request is the span of one HTTP request. A nil *Request does nothing.
type Request struct {
	span trace.Span
}

// StartRequest starts the span of a request, continuing the trace of a
// W3C traceparent header when h has one. route is a bounded route label;
// the span never holds the path, query, headers or body.
func (t *Telemetry) StartRequest(ctx context.Context, h http.Header, method, route string) (context.Context, *Request) {
	if !t.Tracing() {
		return ctx, nil
	}
	ctx = t.propagator.Extract(ctx, propagation.HeaderCarrier(h))
	ctx, span := t.tracer.Start(ctx, method+" "+route, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(
			attribute.String("http.request.method", method),
			attribute.String("http.route", route),
		))
	if id := observe.RequestID(ctx); id != "" {
		span.SetAttributes(attribute.String("request_id", id))
	}
	return ctx, &Request{span: span}
}

// End ends the span with the response status.
func (r *Request) End(status int) {
	if r == nil {
		return
	}
	r.span.SetAttributes(attribute.Int("http.response.status_code", status))
	if status >= 500 {
		r.span.SetStatus(codes.Error, http.StatusText(status))
	}
	r.span.End()
}

// Report sends an error event to Sentry with message and the given tags,
// all scrubbed. It does nothing when reporting is off.
func (t *Telemetry) Report(ctx context.Context, level slog.Level, message string, tags map[string]string) {
	if !t.Reporting() {
		return
	}
	e := sentry.NewEvent()
	e.Level = sentry.LevelError
	if level < slog.LevelError {
		e.Level = sentry.LevelWarning
	}
	e.Message = message
	e.Tags = make(map[string]string, len(tags)+1)
	for k, v := range tags {
		e.Tags[k] = v
	}
	if id := observe.RequestID(ctx); id != "" {
		e.Tags["request_id"] = id
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		e.Tags["trace_id"] = sc.TraceID().String()
	}
	t.sentry.CaptureEvent(e, nil, nil)
}

// Shutdown sends what is buffered and stops, waiting at most until ctx is
// done.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	var errs []error
	if t.provider != nil {
		if err := t.provider.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("flush traces: %w", err))
		}
	}
	if t.sentry != nil {
		wait := 5 * time.Second
		if d, ok := ctx.Deadline(); ok {
			wait = time.Until(d)
		}
		if !t.sentry.Flush(wait) {
			errs = append(errs, errors.New("flush error reports: timed out"))
		}
	}
	return errors.Join(errs...)
}
