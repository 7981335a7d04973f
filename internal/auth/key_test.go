package auth

import (
	"strings"
	"testing"
)

func TestNewKeyParses(t *testing.T) {
	seen := make(map[string]bool)
	for range 200 {
		text, keyID, secretText := NewKey()
		if !KeyPattern.MatchString(text) {
			t.Fatalf("NewKey text %q does not match KeyPattern", text)
		}
		id, sec, ok := ParseKey(text)
		if !ok {
			t.Fatalf("ParseKey(%q) failed", text)
		}
		if id != keyID || sec != secretText {
			t.Fatalf("ParseKey = %q, %q; want %q, %q", id, sec, keyID, secretText)
		}
		if seen[keyID] {
			t.Fatalf("key id %q drawn twice", keyID)
		}
		seen[keyID] = true
	}
}

func TestNewKeyUsesWholeAlphabet(t *testing.T) {
	var all strings.Builder
	for range 200 {
		_, _, s := NewKey()
		all.WriteString(s)
	}
	// 8000 draws from 62 characters miss one with a chance of about
	// 62 * (61/62)^8000, far below one in a billion.
	for _, ch := range base62 {
		if !strings.ContainsRune(all.String(), ch) {
			t.Errorf("character %q never drawn in 8000 secret characters", ch)
		}
	}
}

func TestParseKeyRejects(t *testing.T) {
	good, _, _ := NewKey()
	cases := map[string]string{
		"empty":           "",
		"other prefix":    "sk" + good[2:],
		"upper hex id":    "gp_ABCDEF012345" + good[15:],
		"short secret":    good[:len(good)-1],
		"long secret":     good + "a",
		"symbol":          good[:len(good)-1] + "-",
		"missing divider": strings.Replace(good, "_", "", 2),
		"trailing space":  good + " ",
	}
	for name, text := range cases {
		t.Run(name, func(t *testing.T) {
			if _, _, ok := ParseKey(text); ok {
				t.Errorf("ParseKey(%q) ok; want rejected", text)
			}
		})
	}
}
