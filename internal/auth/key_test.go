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

// FuzzParseKey checks that ParseKey accepts exactly the texts that
// KeyPattern matches, and splits them the same way.
func FuzzParseKey(f *testing.F) {
	good, _, _ := NewKey()
	f.Add(good)
	f.Add("gp_0123456789ab-" + good[16:])
	f.Add("gp_0123456789aB_" + good[16:])
	f.Add(good[:len(good)-1] + "\n")
	f.Add(good[:len(good)-1] + "é"[:1])
	f.Fuzz(func(t *testing.T, text string) {
		id, secret, ok := ParseKey(text)
		m := KeyPattern.FindStringSubmatch(text)
		if ok != (m != nil) {
			t.Fatalf("ParseKey(%q) ok = %v, KeyPattern match = %v", text, ok, m != nil)
		}
		if ok && (id != m[1] || secret != m[2]) {
			t.Fatalf("ParseKey(%q) = %q, %q; KeyPattern gives %q, %q", text, id, secret, m[1], m[2])
		}
	})
}
