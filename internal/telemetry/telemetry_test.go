package telemetry_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/grokproxy/grokproxy/internal/observe"
	"github.com/grokproxy/grokproxy/internal/secret"
	"github.com/grokproxy/grokproxy/internal/telemetry"
)

const (
	cookie = "sso=telemetry-cookie-5d1c9e"
	prompt = "please summarise my medical history"
)

// collector acts as an OTLP/HTTP collector and a Sentry server on
// loopback and stores what they receive.
type collector struct {
	mu        sync.Mutex
	traces    []*coltrace.ExportTraceServiceRequest
	rawTraces [][]byte
	envelopes [][]byte
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	b, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case r.URL.Path == "/v1/traces":
		var req coltrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(b, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.traces = append(c.traces, &req)
		c.rawTraces = append(c.rawTraces, b)
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
		w.Write(out)
	case strings.HasPrefix(r.URL.Path, "/api/1/"):
		c.envelopes = append(c.envelopes, b)
		w.Write([]byte(`{}`))
	default:
		http.NotFound(w, r)
	}
}

func (c *collector) snapshot() (traces []*coltrace.ExportTraceServiceRequest, raw, envelopes [][]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append(traces, c.traces...), append(raw, c.rawTraces...), append(envelopes, c.envelopes...)
}

func TestOffByDefault(t *testing.T) {
	tel, err := telemetry.New(telemetry.Config{})
	if err != nil || tel != nil {
		t.Fatalf("New(zero) = %v, %v; want nil, nil", tel, err)
	}
	ctx, req := tel.StartRequest(context.Background(), http.Header{}, "GET", "models")
	req.End(200)
	tel.Report(ctx, slog.LevelError, "nothing", nil)
	if tel.Tracing() || tel.Reporting() {
		t.Fatal("a nil Telemetry claims to send")
	}
	var buf bytes.Buffer
	next := slog.NewTextHandler(&buf, nil)
	if h := tel.LogHandler(next); h != next {
		t.Fatal("LogHandler wrapped the handler with reporting off")
	}
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestRejectsBadEndpoints(t *testing.T) {
	if _, err := telemetry.New(telemetry.Config{OTLPEndpoint: "127.0.0.1:4318"}); err == nil ||
		!strings.Contains(err.Error(), "OTEL_EXPORTER_OTLP_ENDPOINT") {
		t.Errorf("endpoint without scheme: %v", err)
	}
	_, err := telemetry.New(telemetry.Config{SentryDSN: secret.New("not a dsn secret-part")})
	if err == nil || !strings.Contains(err.Error(), "SENTRY_DSN") || strings.Contains(err.Error(), "secret-part") {
		t.Errorf("bad DSN: %v", err)
	}
}

func TestSendsScrubbedTracesAndReports(t *testing.T) {
	col := &collector{}
	srv := httptest.NewServer(col)
	defer srv.Close()
	dsn := "http://publickey@" + strings.TrimPrefix(srv.URL, "http://") + "/1"
	tel, err := telemetry.New(telemetry.Config{
		SentryDSN: secret.New(dsn), OTLPEndpoint: srv.URL, Version: "test-1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if !tel.Tracing() || !tel.Reporting() {
		t.Fatal("telemetry is not on")
	}

	var local bytes.Buffer
	log := slog.New(tel.LogHandler(observe.NewContextHandler(observe.NewScrubHandler(slog.NewJSONHandler(&local, nil)))))
	ctx := observe.WithRequestID(context.Background(), "req_telemetry_1")
	h := http.Header{}
	h.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	h.Set("Cookie", cookie)
	ctx, req := tel.StartRequest(ctx, h, http.MethodPost, "chat_completions")
	log.With("route", "chat_completions").ErrorContext(ctx, "upstream failed with "+cookie,
		"error", errors.New("login rejected: "+cookie),
		"prompt", prompt,
		"status", 502)
	log.InfoContext(ctx, "not reported", "status", 200)
	req.End(http.StatusBadGateway)

	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tel.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}

	traces, raw, envelopes := col.snapshot()
	if len(traces) == 0 {
		t.Fatal("the collector received no trace export")
	}
	var found bool
	for _, rs := range traces[0].GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				if sp.GetName() != "POST chat_completions" {
					continue
				}
				found = true
				attrs := map[string]string{}
				for _, kv := range sp.GetAttributes() {
					attrs[kv.GetKey()] = kv.GetValue().String()
				}
				if !strings.Contains(attrs["request_id"], "req_telemetry_1") {
					t.Errorf("span request_id = %q", attrs["request_id"])
				}
				if !strings.Contains(attrs["http.response.status_code"], "502") {
					t.Errorf("span status = %q", attrs["http.response.status_code"])
				}
				if got := sp.GetTraceId(); len(got) != 16 || got[0] != 0x4b {
					t.Errorf("span did not continue the incoming trace: %x", got)
				}
			}
		}
	}
	if !found {
		t.Errorf("no span named %q arrived", "POST chat_completions")
	}

	if len(envelopes) != 1 {
		t.Fatalf("Sentry received %d envelopes, want 1 (Error records only)", len(envelopes))
	}
	env := string(envelopes[0])
	for _, want := range []string{"req_telemetry_1", "upstream failed with [redacted]", "chat_completions", "502"} {
		if !strings.Contains(env, want) {
			t.Errorf("report lacks %q: %s", want, env)
		}
	}
	for _, leak := range [][]byte{[]byte("telemetry-cookie-5d1c9e"), []byte("medical history")} {
		for _, b := range append(raw, envelopes...) {
			if bytes.Contains(b, leak) {
				t.Errorf("%q left the process: %s", leak, b)
			}
		}
	}
	if !strings.Contains(local.String(), `"request_id":"req_telemetry_1"`) {
		t.Errorf("local log line lacks the request id: %s", local.String())
	}
}
