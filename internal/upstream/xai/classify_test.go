package xai

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/grokproxy/grokproxy/internal/secret"
	"github.com/grokproxy/grokproxy/internal/upstream"
)

func TestResetAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name   string
		header map[string]string
		want   time.Duration
	}{
		{"retry-after seconds", map[string]string{"Retry-After": "12", "x-ratelimit-reset-requests": "90s"}, 12 * time.Second},
		{"retry-after date", map[string]string{"Retry-After": now.Add(40 * time.Second).Format(http.TimeFormat)}, 40 * time.Second},
		{"duration header", map[string]string{"x-ratelimit-reset-requests": "6m0s"}, 6 * time.Minute},
		{"exhausted one wins", map[string]string{
			"x-ratelimit-remaining-requests": "5", "x-ratelimit-reset-requests": "1s",
			"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "20s"}, 20 * time.Second},
		{"longest without remaining", map[string]string{"x-ratelimit-reset-requests": "2s", "x-ratelimit-reset-tokens": "500ms"}, 2 * time.Second},
		{"plain seconds", map[string]string{"x-ratelimit-reset-requests": "7"}, 7 * time.Second},
		{"unix time", map[string]string{"x-ratelimit-reset-requests": "1767323105"}, 60 * time.Second},
		{"none", map[string]string{}, 0},
		{"garbage", map[string]string{"Retry-After": "soon", "x-ratelimit-reset-requests": "later"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tt.header {
				h.Set(k, v)
			}
			if got := resetAfter(h, now); got != tt.want {
				t.Errorf("resetAfter = %s; want %s", got, tt.want)
			}
		})
	}
}

func TestClassifyStatuses(t *testing.T) {
	tests := []struct {
		status int
		want   upstream.Outcome
	}{
		{400, upstream.OutcomeRejectedRequest},
		{401, upstream.OutcomeUnauthorized},
		{402, upstream.OutcomeBlocked},
		{403, upstream.OutcomeBlocked},
		{404, upstream.OutcomeRejectedRequest},
		{408, upstream.OutcomeUnavailable},
		{422, upstream.OutcomeRejectedRequest},
		{429, upstream.OutcomeRateLimited},
		{500, upstream.OutcomeUnavailable},
		{502, upstream.OutcomeUnavailable},
		{302, upstream.OutcomeUnavailable},
	}
	for _, tt := range tests {
		resp := &http.Response{StatusCode: tt.status, Header: http.Header{}}
		if got := classify(resp, nil, time.Now(), scrubber{}).Outcome; got != tt.want {
			t.Errorf("status %d: outcome %s; want %s", tt.status, got, tt.want)
		}
	}
}

func TestErrorMessageHidesKeys(t *testing.T) {
	key := "xai-AbCdEf0123456789secret"
	sc := newScrubber(upstream.Credential{Secret: secret.New(key), ProxyURL: secret.New("http://user:pw-9z8y@127.0.0.1:3128")})
	bodies := []string{
		`{"code":"The request does not have valid authentication credentials","error":"Incorrect API key provided: ` + key + `."}`,
		`{"code":"x","error":"Incorrect API key provided: xa***ret. You can obtain an API key from the console."}`,
		`{"error":{"message":"proxy http://user:pw-9z8y@127.0.0.1:3128 refused","type":"invalid_request_error"}}`,
	}
	for _, b := range bodies {
		msg := errorMessage([]byte(b), 401, sc)
		for _, leak := range []string{key, "xa***ret", "pw-9z8y"} {
			if strings.Contains(msg, leak) {
				t.Errorf("message %q leaks %q", msg, leak)
			}
		}
		if !strings.Contains(msg, "[redacted]") {
			t.Errorf("message %q has no [redacted] mark", msg)
		}
	}
	if got := errorMessage([]byte("<html>oops</html>"), 502, sc); got != "Bad Gateway" {
		t.Errorf("message of a non-JSON body = %q; want the status text", got)
	}
	long := `{"error":"` + strings.Repeat("é", 400) + `"}`
	if got := errorMessage([]byte(long), 400, sc); len([]rune(got)) != maxErrorMessageRune+1 {
		t.Errorf("long message has %d runes; want it capped at %d plus an ellipsis", len([]rune(got)), maxErrorMessageRune)
	}
}

func TestUsageFolding(t *testing.T) {
	detail := func(n int) *struct {
		ReasoningTokens int `json:"reasoning_tokens"`
	} {
		return &struct {
			ReasoningTokens int `json:"reasoning_tokens"`
		}{n}
	}
	xaiStyle := wireUsage{PromptTokens: 10, CompletionTokens: 5, TotalTokens: 45, CompletionTokensDetails: detail(30)}
	if u := xaiStyle.usage(); u.CompletionTokens != 35 || u.TotalTokens != 45 || u.ReasoningTokens != 30 {
		t.Errorf("xAI-style usage folded to %+v; want completion 35 total 45 reasoning 30", u)
	}
	openaiStyle := wireUsage{PromptTokens: 10, CompletionTokens: 35, TotalTokens: 45, CompletionTokensDetails: detail(30)}
	if u := openaiStyle.usage(); u.CompletionTokens != 35 {
		t.Errorf("OpenAI-style usage changed to %+v; want completion 35", u)
	}
	if (*wireUsage)(nil).usage() != nil {
		t.Error("nil usage became non-nil")
	}
}
