package observe_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/grokproxy/grokproxy/internal/observe"
)

func TestScrubText(t *testing.T) {
	cases := []struct {
		name, in, leak string
	}{
		{"sso cookie", "cookie was sso=eyJhbGciOi.abc.def; other=1", "eyJhbGciOi"},
		{"sso-rw", "sso-rw=tok123", "tok123"},
		{"bearer", "Authorization: Bearer sk-live-abcdef123", "sk-live-abcdef123"},
		{"our key", "key gp_0123456789ab_" + strings.Repeat("Z", 40) + " used", strings.Repeat("Z", 40)},
		{"xai key", "xai-ABCDEFGHIJKLMNOPQRSTUV", "ABCDEFGHIJKLMNOP"},
		{"email", "mail alice.smith@example.org now", "alice.smith@example.org"},
		{"ssn", "ssn 123-45-6789", "123-45-6789"},
		{"phone", "call (415) 555-0132 today", "555-0132"},
		{"jwt", "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig", "eyJzdWIiOiIxIn0"},
		{"bearer in capitals", "AUTH BEARER abcdefXYZ", "abcdefXYZ"},
		{"bare jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.", "eyJzdWIiOiIxIn0"},
		{"dotted phone", "reach me on 415.555.0132", "555.0132"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := observe.Scrub(c.in)
			if strings.Contains(got, c.leak) {
				t.Fatalf("Scrub(%q) = %q; still contains %q", c.in, got, c.leak)
			}
			if !strings.Contains(got, "[redacted]") {
				t.Fatalf("Scrub(%q) = %q; want a [redacted] marker", c.in, got)
			}
		})
	}
	if got := observe.Scrub("plain text 42 tokens"); got != "plain text 42 tokens" {
		t.Fatalf("Scrub changed harmless text to %q", got)
	}
}

func TestLoggerScrubsAttributes(t *testing.T) {
	var buf bytes.Buffer
	log := observe.NewLogger(&buf, "debug", "json")
	log.With("api_key", "k-with").Info("event with sso=abc123 inside",
		"cookie", "plain-cookie-value",
		"Authorization", "Bearer hidden-bearer",
		"error", errors.New("upstream said sso=err-cookie"),
		"note", "contact bob@example.com",
		"gen_ai.usage.input_tokens", 12,
		"group", map[string]string{"k": "v"},
	)
	out := buf.String()
	for _, leak := range []string{"k-with", "abc123", "plain-cookie-value", "hidden-bearer", "err-cookie", "bob@example.com"} {
		if strings.Contains(out, leak) {
			t.Errorf("log output contains %q: %s", leak, out)
		}
	}
	if !strings.Contains(out, `"gen_ai.usage.input_tokens":12`) {
		t.Errorf("token count was scrubbed: %s", out)
	}
}

func TestLoggerCleanRecord(t *testing.T) {
	var buf bytes.Buffer
	log := observe.NewLogger(&buf, "info", "json")
	log.Info("request", "route", "chat_completions", "status", 200, "password", 987654)
	out := buf.String()
	if strings.Contains(out, "987654") {
		t.Errorf("a number under a secret key was logged: %s", out)
	}
	for _, want := range []string{`"msg":"request"`, `"route":"chat_completions"`, `"status":200`} {
		if !strings.Contains(out, want) {
			t.Errorf("log output lacks %s: %s", want, out)
		}
	}
}

func TestValidRequestID(t *testing.T) {
	for id, want := range map[string]bool{
		"abc-123":                true,
		"":                       false,
		"has space":              false,
		"inject\r\nX-Evil: 1":    false,
		strings.Repeat("a", 129): false,
	} {
		if got := observe.ValidRequestID(id); got != want {
			t.Errorf("ValidRequestID(%q) = %v; want %v", id, got, want)
		}
	}
	if id := observe.NewRequestID(); !observe.ValidRequestID(id) || !strings.HasPrefix(id, "req_") {
		t.Errorf("NewRequestID() = %q", id)
	}
}
