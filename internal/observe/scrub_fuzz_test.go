package observe

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// Secrets planted between the fuzzed texts; none may survive scrubbing.
var plantedSecrets = []struct{ text, secret string }{
	{"sso=Zq8sso7Wk3mPq1", "Zq8sso7Wk3mPq1"},
	{"Authorization: Bearer tok9Lm2Xv7Qa", "tok9Lm2Xv7Qa"},
	{"xai-AbCdEf0123456789Gh", "xai-AbCdEf0123456789Gh"},
	{"mail jo.doe+x@example.org", "jo.doe+x@example.org"},
	{"ssn 123-45-6789", "123-45-6789"},
}

// FuzzScrub checks that secrets and personal data placed anywhere in
// arbitrary text are gone after Scrub, and after the log handler, whether
// they sit in the message, a string attribute or a nested group.
func FuzzScrub(f *testing.F) {
	f.Add("", "")
	f.Add("sso=", ";")
	f.Add("bearer", "@example.com")
	f.Add("\"cookie\":\"", "\"}")
	f.Add("\xff\xfe", "555-12")
	f.Fuzz(func(t *testing.T, before, after string) {
		if got, want := Scrub(before+after), scrubPatterns(before+after); got != want {
			t.Fatalf("Scrub(%q) = %q, want %q from the patterns: the quick check missed a secret", before+after, got, want)
		}
		for _, p := range plantedSecrets {
			text := before + " " + p.text + " " + after
			if got := Scrub(text); strings.Contains(got, p.secret) {
				t.Fatalf("Scrub(%q) = %q; the secret survived", text, got)
			}

			var buf bytes.Buffer
			log := slog.New(NewScrubHandler(slog.NewJSONHandler(&buf, nil)))
			log.Info(text, "detail", text, slog.Group("g", slog.String("note", text)))
			if strings.Contains(buf.String(), p.secret) {
				t.Fatalf("log line %q keeps the secret", buf.String())
			}
		}
	})
}
