package grokweb_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/grokproxy/grokproxy/internal/upstream/grokweb"
)

func TestParseCookie(t *testing.T) {
	tests := []struct {
		name       string
		text       string
		wantKey    string
		wantHeader string
	}{
		{"bare value", "eyJhbGciOi.abc.def", "eyJhbGciOi.abc.def",
			"sso=eyJhbGciOi.abc.def; sso-rw=eyJhbGciOi.abc.def"},
		{"bare value with padding", "  tok== \n", "tok==", "sso=tok==; sso-rw=tok=="},
		{"quoted bare value", `"tok"`, "tok", "sso=tok; sso-rw=tok"},
		{"sso only", "sso=tok", "tok", "sso=tok; sso-rw=tok"},
		{"full header", "sso=tok; sso-rw=tok; cf_clearance=cf1; x-userid=u-1", "tok",
			"sso=tok; sso-rw=tok; cf_clearance=cf1; x-userid=u-1"},
		{"sso-rw rebuilt from sso", "sso-rw=old; sso=tok", "tok", "sso=tok; sso-rw=tok"},
		{"quoted sso in header", `sso="tok"; __cf_bm=b`, "tok", "sso=tok; sso-rw=tok; __cf_bm=b"},
		{"not a JWT", "sso=anything-goes", "anything-goes", "sso=anything-goes; sso-rw=anything-goes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := grokweb.ParseCookie(tt.text)
			if err != nil {
				t.Fatalf("ParseCookie(%q): %v", tt.text, err)
			}
			if got := c.DedupKey(); got != tt.wantKey {
				t.Errorf("DedupKey = %q; want %q", got, tt.wantKey)
			}
			if got := c.Header(""); got != tt.wantHeader {
				t.Errorf("Header = %q; want %q", got, tt.wantHeader)
			}
		})
	}
}

func TestParseCookieRejectsMissingSSO(t *testing.T) {
	for _, text := range []string{"", "   ", `""`, "sso=", "sso=; sso-rw=tok", "cf_clearance=abc", "a=b; c=d"} {
		if _, err := grokweb.ParseCookie(text); err == nil {
			t.Errorf("ParseCookie(%q) succeeded; want an error", text)
		}
	}
}

func TestCookieHeaderAccountID(t *testing.T) {
	c, err := grokweb.ParseCookie("sso=tok; x-userid=old")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Header("new"), "sso=tok; sso-rw=tok; x-userid=new"; got != want {
		t.Errorf("Header(new) = %q; want %q", got, want)
	}
}

func TestCookieDoesNotPrintSecret(t *testing.T) {
	c, err := grokweb.ParseCookie("sso=secret-token; cf_clearance=secret-cf")
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("cookie", "cookie", c)
	outputs := map[string]string{
		"String": c.String(),
		"%v":     fmt.Sprintf("%v", c),
		"%+v":    fmt.Sprintf("%+v", c),
		"%#v":    fmt.Sprintf("%#v", c),
		//lint:ignore S1025 the test checks the %s verb itself
		"%s":   fmt.Sprintf("%s", c),
		"slog": logged.String(),
	}
	for name, out := range outputs {
		if strings.Contains(out, "secret") {
			t.Errorf("%s prints the secret: %q", name, out)
		}
		if !strings.Contains(out, "[redacted]") {
			t.Errorf("%s = %q; want [redacted]", name, out)
		}
	}
}
