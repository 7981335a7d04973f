package observe

import "testing"

func TestSecretKeyCached(t *testing.T) {
	cases := map[string]bool{
		"api_key":       true,
		"Authorization": true,
		"sso_cookie":    true,
		"prompt_tokens": false,
		"route":         false,
		"status":        false,
	}
	// The second round reads the cache.
	for round := range 2 {
		for key, want := range cases {
			if got := isSecretKey(key); got != want {
				t.Errorf("round %d: isSecretKey(%q) = %v; want %v", round, key, got, want)
			}
		}
	}
	for key, want := range cases {
		v, ok := secretKeyCache.Load(key)
		if !ok {
			t.Errorf("%q is not cached", key)
			continue
		}
		if v.(bool) != want {
			t.Errorf("cache holds %v for %q; want %v", v, key, want)
		}
	}
}

func TestContainsFold(t *testing.T) {
	for _, c := range []struct {
		s    string
		want bool
	}{
		{"Authorization: Bearer abc", true},
		{"BEARER", true},
		{"xbEaReR", true},
		{"bear", false},
		{"", false},
		{"b", false},
		{"bearing", false},
	} {
		if got := containsFold(c.s, "bearer"); got != c.want {
			t.Errorf("containsFold(%q, bearer) = %v; want %v", c.s, got, c.want)
		}
	}
}
