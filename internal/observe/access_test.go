package observe

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// slogLine returns the line slog's JSON handler writes for the record of
// a at t.
func slogLine(t time.Time, a Access) string {
	var buf bytes.Buffer
	slog.NewJSONHandler(&buf, nil).Handle(context.Background(), a.record(t))
	return buf.String()
}

func TestAccessLineMatchesSlog(t *testing.T) {
	a := Access{RequestID: "req_0123456789abcdef01234567", Method: "POST", Path: "/v1/chat/completions",
		Route: "chat_completions", Status: 200, Bytes: 1234, Duration: 1234567 * time.Nanosecond, ClientIP: "127.0.0.1"}
	for _, at := range []time.Time{
		time.Date(2026, 12, 4, 21, 16, 15, 123456789, time.UTC),
		time.Date(2026, 12, 4, 21, 16, 15, 0, time.FixedZone("CET", 3600)),
		time.Now(),
	} {
		if !a.plain() {
			t.Fatal("the test's fields are not plain")
		}
		got, want := string(appendAccess(nil, at, a)), slogLine(at, a)
		if got != want {
			t.Errorf("appendAccess:\n%s\nslog:\n%s", got, want)
		}
	}
}

func TestLogAccessFallsBackToSlog(t *testing.T) {
	for _, c := range []struct {
		name, path string
		fast       bool
	}{
		{"plain", "/v1/models", true},
		{"quote", `/v1/models/a"b`, false},
		{"unicode", "/v1/models/é", false},
		{"control", "/v1/models/a\nb", false},
		{"secret", "/v1/models/sk-gp_0123456789ab_0123456789012345678901234567890123456789", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := Access{RequestID: "req_1", Method: "GET", Path: c.path, Route: "model", Status: 404, Bytes: 10,
				Duration: time.Millisecond, ClientIP: "192.0.2.1"}
			if a.plain() != c.fast {
				t.Fatalf("plain() = %v; want %v", a.plain(), c.fast)
			}
			var out bytes.Buffer
			LogAccess(context.Background(), NewLogger(&out, "info", "json"), a)
			var line map[string]any
			if err := json.Unmarshal(out.Bytes(), &line); err != nil {
				t.Fatalf("line %q is not JSON: %v", out.String(), err)
			}
			if line["msg"] != "request" || line["status"] != float64(404) || line["client_ip"] != "192.0.2.1" {
				t.Errorf("line %v lacks the request's fields", line)
			}
			if strings.Contains(out.String(), "0123456789ab_0123") {
				t.Errorf("a key reached the log: %s", out.String())
			}
		})
	}
}

func TestLogAccessLevelAndFormat(t *testing.T) {
	a := Access{RequestID: "req_1", Method: "GET", Path: "/v1/models", Route: "models", Status: 200, ClientIP: "192.0.2.1"}
	var quiet bytes.Buffer
	LogAccess(context.Background(), NewLogger(&quiet, "warn", "json"), a)
	if quiet.Len() != 0 {
		t.Errorf("logged at LOG_LEVEL=warn: %s", quiet.String())
	}
	var text bytes.Buffer
	LogAccess(context.Background(), NewLogger(&text, "info", "text"), a)
	if !strings.Contains(text.String(), "msg=request") || !strings.Contains(text.String(), "path=/v1/models") {
		t.Errorf("text format line %q", text.String())
	}
	var bound bytes.Buffer
	LogAccess(context.Background(), NewLogger(&bound, "info", "json").With("replica", "r1"), a)
	if !strings.Contains(bound.String(), `"replica":"r1"`) {
		t.Errorf("a logger's own attributes are missing: %s", bound.String())
	}
}

// FuzzAccessLine checks that a line LogAccess encodes itself is the line
// slog's JSON handler writes.
func FuzzAccessLine(f *testing.F) {
	f.Add("/v1/chat/completions", "req_1", int64(1234), int64(999))
	f.Add("/v1/models/grok-3", "abc-DEF_1.2:3", int64(0), int64(-1))
	f.Fuzz(func(t *testing.T, path, id string, n, d int64) {
		a := Access{RequestID: id, Method: "POST", Path: path, Route: "model", Status: 200, Bytes: n,
			Duration: time.Duration(d), ClientIP: "::1"}
		if !a.plain() {
			return
		}
		at := time.Unix(0, n).UTC()
		if got, want := string(appendAccess(nil, at, a)), slogLine(at, a); got != want {
			t.Fatalf("appendAccess:\n%s\nslog:\n%s", got, want)
		}
	})
}
