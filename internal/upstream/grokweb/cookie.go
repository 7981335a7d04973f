package grokweb

import (
	"errors"
	"log/slog"
	"strings"

	"github.com/grokproxy/grokproxy/internal/secret"
)

// Cookie is the browser login of one Grok web session: the sso token and
// the other cookies (Cloudflare clearance and the like) that came with it.
// It prints as [redacted] with fmt and slog.
type Cookie struct {
	sso    secret.Value
	userID string       // x-userid cookie, when the text carried one
	extra  []cookiePair // every other cookie, in the order given
}

type cookiePair struct {
	name  string
	value secret.Value
}

// errNoSSO is returned when the cookie text holds no sso value.
var errNoSSO = errors.New("cookie has no sso value")

// loginCookies are the names rebuilt by Header instead of being copied.
var loginCookies = map[string]bool{"sso": true, "sso-rw": true, "x-userid": true}

// ParseCookie reads a session credential: either a whole Cookie header
// ("sso=…; sso-rw=…; cf_clearance=…; x-userid=…") or the bare sso value.
// Any non-empty sso value is accepted, and its format is not checked. Text
// without an sso value is an error.
func ParseCookie(text string) (Cookie, error) {
	text = strings.TrimSpace(text)
	if !isCookieHeader(text) {
		v := unquote(text)
		if v == "" {
			return Cookie{}, errNoSSO
		}
		return Cookie{sso: secret.New(v)}, nil
	}

	var c Cookie
	for part := range strings.SplitSeq(text, ";") {
		name, value, ok := strings.Cut(strings.TrimSpace(part), "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			continue
		}
		value = unquote(value)
		switch name {
		case "sso":
			c.sso = secret.New(value)
		case "x-userid":
			c.userID = value
		case "sso-rw":
			// Rebuilt from sso by Header: the web app sends the same value.
		default:
			c.extra = append(c.extra, cookiePair{name: name, value: secret.New(value)})
		}
	}
	if c.sso.Empty() {
		return Cookie{}, errNoSSO
	}
	return c, nil
}

// isCookieHeader reports whether text is a Cookie header rather than a
// bare sso value. A bare value may itself contain '=' (base64 padding), so
// only a semicolon or a leading known cookie name marks a header.
func isCookieHeader(text string) bool {
	if strings.Contains(text, ";") {
		return true
	}
	name, _, ok := strings.Cut(text, "=")
	if !ok {
		return false
	}
	name = strings.TrimSpace(name)
	switch name {
	case "sso", "sso-rw", "x-userid", "cf_clearance", "__cf_bm", "_cfuvid":
		return true
	}
	return strings.HasPrefix(name, "cf_chl_")
}

// unquote trims spaces and one pair of surrounding double or single quotes.
func unquote(s string) string {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && (s[0] == '"' || s[0] == '\'') && s[len(s)-1] == s[0] {
		s = strings.TrimSpace(s[1 : len(s)-1])
	}
	return s
}

// Header builds the Cookie header sent upstream. sso-rw always repeats
// sso, because grok.com has rejected requests without it since about
// June 2026. accountID, when not empty, is sent as x-userid in place of
// the one parsed from the text.
func (c Cookie) Header(accountID string) string {
	sso := c.sso.Reveal()
	parts := []string{"sso=" + sso, "sso-rw=" + sso}
	for _, p := range c.extra {
		if loginCookies[p.name] {
			continue
		}
		parts = append(parts, p.name+"="+p.value.Reveal())
	}
	if accountID == "" {
		accountID = c.userID
	}
	if accountID != "" {
		parts = append(parts, "x-userid="+accountID)
	}
	return strings.Join(parts, "; ")
}

// DedupKey returns the normalised sso value (trimmed, surrounding quotes
// removed), which identifies the login when checking for duplicates. It
// is the secret itself: hash it before storing or comparing at rest.
func (c Cookie) DedupKey() string { return c.sso.Reveal() }

// UserID returns the x-userid cookie given with the credential, or "".
func (c Cookie) UserID() string { return c.userID }

// secrets lists every cookie value, so error text can be scrubbed of them.
func (c Cookie) secrets() []string {
	out := []string{c.sso.Reveal()}
	for _, p := range c.extra {
		out = append(out, p.value.Reveal())
	}
	return out
}

// String returns [redacted].
func (Cookie) String() string { return secret.Redacted }

// GoString returns [redacted], so %#v does not print the cookie either.
func (Cookie) GoString() string { return secret.Redacted }

// LogValue prints [redacted] in slog records.
func (Cookie) LogValue() slog.Value { return slog.StringValue(secret.Redacted) }
