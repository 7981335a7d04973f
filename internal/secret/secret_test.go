package secret_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/grokproxy/grokproxy/internal/secret"
)

const planted = "sso=eyJplanted-secret-value"

func TestValueRedactsEverywhere(t *testing.T) {
	v := secret.New(planted)
	wrapped := struct {
		Cookie secret.Value `json:"cookie"`
	}{v}

	outputs := map[string]string{
		"%v":     fmt.Sprintf("%v", v),
		"%s":     fmt.Sprintf("%s", v),
		"%q":     fmt.Sprintf("%q", v),
		"%x":     fmt.Sprintf("%x", v),
		"%#v":    fmt.Sprintf("%#v", v),
		"%+v":    fmt.Sprintf("%+v", wrapped),
		"Sprint": fmt.Sprint(v),
	}
	b, err := json.Marshal(wrapped)
	if err != nil {
		t.Fatal(err)
	}
	outputs["json"] = string(b)
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("event", "cookie", v, "nested", wrapped)
	outputs["slog"] = buf.String()

	for name, out := range outputs {
		if strings.Contains(out, "planted") {
			t.Errorf("%s printed the secret: %s", name, out)
		}
		if !strings.Contains(out, secret.Redacted) {
			t.Errorf("%s = %q; want it to contain %q", name, out, secret.Redacted)
		}
	}
}

func TestValueReveal(t *testing.T) {
	v := secret.New(planted)
	if got := v.Reveal(); got != planted {
		t.Fatalf("Reveal() = %q; want %q", got, planted)
	}
	if v.Empty() {
		t.Fatal("Empty() = true for a non-empty value")
	}
	if !(secret.Value{}).Empty() {
		t.Fatal("Empty() = false for the zero value")
	}
}
