package grokweb

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/grokproxy/grokproxy/internal/secret"
	"github.com/grokproxy/grokproxy/internal/upstream"
)

func TestChatHTTPErrors(t *testing.T) {
	const challenge = `<!DOCTYPE html><html><head><title>Just a moment...</title></head>` +
		`<body><script src="/cdn-cgi/challenge-platform/h/g/orchestrate/chl_page/v1"></script></body></html>`
	tests := []struct {
		name        string
		handler     http.HandlerFunc
		wantOutcome upstream.Outcome
		wantStatus  int
		wantCode    int
		wantRetry   time.Duration
	}{
		{"429 with Retry-After", serveStatus(429, "application/json",
			`{"error":{"code":8,"message":"Too many requests","details":[]}}`, "Retry-After", "120"),
			upstream.OutcomeRateLimited, 429, 8, 120 * time.Second},
		{"429 without Retry-After", serveStatus(429, "application/json", `{}`),
			upstream.OutcomeRateLimited, 429, 0, 0},
		{"code 8 under another status", serveStatus(503, "application/json",
			`{"error":{"code":8,"message":"Too many requests"}}`),
			upstream.OutcomeRateLimited, 503, 8, 0},
		{"401", serveStatus(401, "application/json", `{"error":{"code":16,"message":"unauthenticated"}}`),
			upstream.OutcomeUnauthorized, 401, 16, 0},
		{"invalid credentials marker on 400", serveStatus(400, "application/json",
			`{"error":{"code":3,"message":"invalid-credentials"}}`),
			upstream.OutcomeUnauthorized, 400, 3, 0},
		{"blocked user 403", serveStatus(403, "application/json",
			`{"error":{"code":7,"message":"User is blocked [WKE=unauthorized:blocked-user]","details":[]}}`),
			upstream.OutcomeBlocked, 403, 7, 0},
		{"blocked user flat body", serveStatus(401, "application/json",
			`{"code":"unauthorized:blocked-user","error":"User is blocked"}`),
			upstream.OutcomeBlocked, 401, 0, 0},
		{"anti-bot code 7", serveStatus(403, "application/json",
			`{"error":{"code":7,"message":"Request rejected by anti-bot rules.","details":[]}}`),
			upstream.OutcomeEgressRejected, 403, 7, 0},
		{"Cloudflare challenge 403", serveStatus(403, "text/html; charset=UTF-8", challenge),
			upstream.OutcomeEgressRejected, 403, 0, 0},
		{"Cloudflare challenge 503", serveStatus(503, "text/html", challenge),
			upstream.OutcomeEgressRejected, 503, 0, 0},
		{"Cloudflare interstitial 200", serveStatus(200, "text/html", challenge),
			upstream.OutcomeEgressRejected, 200, 0, 0},
		{"empty 403", serveStatus(403, "", ""),
			upstream.OutcomeEgressRejected, 403, 0, 0},
		{"mode denied 403", serveStatus(403, "application/json",
			`{"error":{"code":3,"message":"access denied for this mode"}}`),
			upstream.OutcomeRejectedRequest, 403, 3, 0},
		{"400", serveStatus(400, "application/json", `{"error":{"code":3,"message":"bad field"}}`),
			upstream.OutcomeRejectedRequest, 400, 3, 0},
		{"404 unknown conversation", serveStatus(404, "", "not found"),
			upstream.OutcomeRejectedRequest, 404, 0, 0},
		{"500", serveStatus(500, "text/plain", "oops"),
			upstream.OutcomeUnavailable, 500, 0, 0},
		{"502", serveStatus(502, "", ""),
			upstream.OutcomeUnavailable, 502, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newTestClient(t, tt.handler)
			s, err := c.Chat(testContext(t), testCred(), userChat("x"))
			if s != nil {
				t.Fatal("Chat returned a stream with an error status")
			}
			ue := upstreamError(t, err)
			if ue.Outcome != tt.wantOutcome {
				t.Errorf("outcome = %q; want %q", ue.Outcome, tt.wantOutcome)
			}
			if ue.Status != tt.wantStatus {
				t.Errorf("status = %d; want %d", ue.Status, tt.wantStatus)
			}
			if ue.Code != tt.wantCode {
				t.Errorf("code = %d; want %d", ue.Code, tt.wantCode)
			}
			if ue.RetryAfter != tt.wantRetry {
				t.Errorf("retry after = %v; want %v", ue.RetryAfter, tt.wantRetry)
			}
		})
	}
}

func TestRetryAfterHTTPDate(t *testing.T) {
	now := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	got := retryAfter(now.Add(90*time.Second).Format(http.TimeFormat), now)
	if got != 90*time.Second {
		t.Errorf("retryAfter = %v; want 90s", got)
	}
	if got := retryAfter("soon", now); got != 0 {
		t.Errorf("retryAfter(invalid) = %v; want 0", got)
	}
}

func TestChatInBandErrors(t *testing.T) {
	const token = `{"result":{"response":{"token":"Hi","messageTag":"final","responseId":"m"}}}`
	tests := []struct {
		name        string
		lines       []string
		wantOutcome upstream.Outcome
		wantCode    int
		fromChat    bool // the error comes from Chat, before any event
	}{
		{"error line first", []string{`{"error":{"code":8,"message":"Too many requests"}}`},
			upstream.OutcomeRateLimited, 8, true},
		{"anti-bot line first", []string{`{"error":{"code":7,"message":"Request rejected by anti-bot rules."}}`},
			upstream.OutcomeEgressRejected, 7, true},
		{"other code first", []string{`{"error":{"code":13,"message":"internal"}}`},
			upstream.OutcomeUnavailable, 13, true},
		{"usage limit after user turn", []string{
			`{"result":{"response":{"userResponse":{"responseId":"u","sender":"human"},"responseId":"u"}}}`,
			`{"result":{"response":{"error":{"message":"You've reached your usage limit. Please try again later.","systemErrCode":"rate_limit"},"responseId":"m"}}}`},
			upstream.OutcomeRateLimited, 0, true},
		{"stream errors in final frame", []string{
			`{"result":{"response":{"modelResponse":{"responseId":"m","message":"","streamErrors":[{"code":8,"message":"limit"}]}}}}`},
			upstream.OutcomeRateLimited, 8, true},
		{"empty stream", []string{`{"result":{"conversation":{"conversationId":"c"}}}`},
			upstream.OutcomeBrokenStream, 0, true},
		{"empty answer", []string{`{"result":{"response":{"modelResponse":{"responseId":"m","message":""}}}}`},
			upstream.OutcomeBrokenStream, 0, true},
		{"error line after first token", []string{token, `{"error":{"code":8,"message":"Too many requests"}}`},
			upstream.OutcomeBrokenStream, 8, false},
		{"cut after first token", []string{token},
			upstream.OutcomeBrokenStream, 0, false},
		{"malformed line after first token", []string{token, `{"result":`},
			upstream.OutcomeBrokenStream, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newTestClient(t, serveLines(tt.lines...))
			s, err := c.Chat(testContext(t), testCred(), userChat("x"))
			if tt.fromChat {
				if s != nil {
					t.Fatal("Chat returned a stream; want the error from Chat")
				}
			} else {
				if err != nil {
					t.Fatalf("Chat: %v; want the error from Next", err)
				}
				var events []upstream.Event
				events, err = collect(t, s)
				if len(events) == 0 || events[0].Kind != upstream.EventStart {
					t.Errorf("events before the error = %v; want a start first", kinds(events))
				}
			}
			ue := upstreamError(t, err)
			if ue.Outcome != tt.wantOutcome {
				t.Errorf("outcome = %q; want %q", ue.Outcome, tt.wantOutcome)
			}
			if ue.Code != tt.wantCode {
				t.Errorf("code = %d; want %d", ue.Code, tt.wantCode)
			}
		})
	}
}

func TestChatConnectError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now

	c := New(Config{BaseURL: "http://" + addr})
	_, err = c.Chat(testContext(t), testCred(), userChat("x"))
	ue := upstreamError(t, err)
	if ue.Outcome != upstream.OutcomeUnavailable {
		t.Errorf("outcome = %q; want unavailable", ue.Outcome)
	}
	if ue.Status != 0 {
		t.Errorf("status = %d; want 0 without a response", ue.Status)
	}
}

func TestChatHeaderTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	_, srv := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	transport := srv.Client().Transport.(*http.Transport).Clone()
	transport.ResponseHeaderTimeout = 100 * time.Millisecond
	c := New(Config{BaseURL: srv.URL, HTTPClient: &http.Client{Transport: transport}})

	_, err := c.Chat(testContext(t), testCred(), userChat("x"))
	if ue := upstreamError(t, err); ue.Outcome != upstream.OutcomeUnavailable {
		t.Errorf("outcome = %q; want unavailable", ue.Outcome)
	}
}

func TestChatCanceledContext(t *testing.T) {
	started := make(chan struct{})
	_, srv := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // the server notices a gone client only after the body
		close(started)
		select { // bounded, so a missed cancellation fails the test instead of hanging it
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}))
	c := New(Config{BaseURL: srv.URL, HTTPClient: srv.Client()})
	ctx, cancel := context.WithCancel(testContext(t))
	go func() {
		<-started
		cancel()
	}()
	_, err := c.Chat(ctx, testCred(), userChat("x"))
	if ue := upstreamError(t, err); ue.Outcome != upstream.OutcomeCanceled {
		t.Errorf("outcome = %q; want canceled", ue.Outcome)
	}
}

func TestChatCanceledMidStream(t *testing.T) {
	_, srv := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"result":{"response":{"token":"a","messageTag":"final","responseId":"m"}}}`+"\n")
		w.(http.Flusher).Flush()
		select { // bounded, so a missed cancellation fails the test instead of hanging it
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}))
	c := New(Config{BaseURL: srv.URL, HTTPClient: srv.Client()})
	ctx, cancel := context.WithCancel(testContext(t))
	s, err := c.Chat(ctx, testCred(), userChat("x"))
	if err != nil {
		t.Fatalf("Chat: %v", err)
	}
	defer s.Close()
	s.Next() // start
	s.Next() // text
	cancel()
	_, err = s.Next()
	if ue := upstreamError(t, err); ue.Outcome != upstream.OutcomeCanceled {
		t.Errorf("outcome = %q; want canceled", ue.Outcome)
	}
}

func TestErrorsHideCookie(t *testing.T) {
	// A server that echoes the request's cookie back in its error message.
	echo := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(400)
		io.WriteString(w, `{"error":{"code":3,"message":"bad cookie `+r.Header.Get("Cookie")+`"}}`)
	}
	c, _ := newTestClient(t, http.HandlerFunc(echo))
	_, err := c.Chat(testContext(t), testCred(), userChat("x"))
	if err == nil {
		t.Fatal("Chat succeeded; want an error")
	}
	for _, s := range []string{testSSO, testClearance} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error text contains a cookie value: %q", err.Error())
		}
	}
	if ue := upstreamError(t, err); !strings.Contains(ue.Message, "[redacted]") {
		t.Errorf("message = %q; want the cookie replaced by [redacted]", ue.Message)
	}
}

func TestChatWithoutSSO(t *testing.T) {
	c := New(Config{BaseURL: "http://127.0.0.1:1"})
	cred := testCred()
	cred.Secret = secret.New("cf_clearance=abc")
	_, err := c.Chat(testContext(t), cred, userChat("x"))
	if ue := upstreamError(t, err); ue.Outcome != upstream.OutcomeUnauthorized {
		t.Errorf("outcome = %q; want unauthorized", ue.Outcome)
	}
	if !errors.Is(err, errNoSSO) {
		t.Errorf("error = %v; want it to wrap errNoSSO", err)
	}
}
