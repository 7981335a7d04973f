package grokweb

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/grokproxy/grokproxy/internal/secret"
	"github.com/grokproxy/grokproxy/internal/upstream"
)

const (
	testSSO       = "sso-secret-value-1234"
	testClearance = "cf-secret-5678"
)

func testCred() upstream.Credential {
	return upstream.Credential{
		SessionID: "s1",
		Secret:    secret.New("sso=" + testSSO + "; cf_clearance=" + testClearance),
	}
}

// newTestClient starts h on loopback and returns a client pointed at it.
func newTestClient(t *testing.T, h http.Handler) (*Client, *httptest.Server) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c := New(Config{BaseURL: srv.URL, HTTPClient: srv.Client()})
	return c, srv
}

// serveLines responds to every request with lines as an NDJSON stream,
// flushing after each line.
func serveLines(lines ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		for _, l := range lines {
			io.WriteString(w, l+"\n")
			w.(http.Flusher).Flush()
		}
	}
}

// serveStatus responds to every request with status, content type and body.
func serveStatus(status int, contentType, body string, header ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

func fixture(t *testing.T, name string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimRight(string(b), "\n"), "\n")
}

func userChat(text string) upstream.ChatRequest {
	return upstream.ChatRequest{Model: "fast", Messages: []upstream.Message{{Role: "user", Text: text}}}
}

// collect reads s to its end and returns the events and the final error
// (nil when the stream ended with io.EOF).
func collect(t *testing.T, s upstream.Stream) ([]upstream.Event, error) {
	t.Helper()
	defer s.Close()
	var events []upstream.Event
	for range 1000 {
		ev, err := s.Next()
		if errors.Is(err, io.EOF) {
			return events, nil
		}
		if err != nil {
			return events, err
		}
		events = append(events, ev)
	}
	t.Fatal("stream did not end after 1000 events")
	return nil, nil
}

func kinds(events []upstream.Event) []upstream.EventKind {
	out := make([]upstream.EventKind, len(events))
	for i, ev := range events {
		out[i] = ev.Kind
	}
	return out
}

func texts(events []upstream.Event, kind upstream.EventKind) string {
	var b strings.Builder
	for _, ev := range events {
		if ev.Kind == kind {
			b.WriteString(ev.Text)
		}
	}
	return b.String()
}

// upstreamError asserts that err is an *upstream.Error and returns it.
func upstreamError(t *testing.T, err error) *upstream.Error {
	t.Helper()
	var ue *upstream.Error
	if !errors.As(err, &ue) {
		t.Fatalf("error = %v (%T); want *upstream.Error", err, err)
	}
	return ue
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}
