package observe

import (
	"context"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/grokproxy/grokproxy/internal/secret"
)

// secretKeys are attribute names whose values are always replaced, matched
// case-insensitively as substrings.
var secretKeys = []string{"cookie", "authorization", "api_key", "apikey", "password", "passwd", "token", "bearer", "secret", "credential", "sso"}

// tokenCountKeys end in "tokens" and hold counts, not secrets.
func isCountKey(k string) bool {
	return strings.HasSuffix(k, "_tokens") || strings.HasSuffix(k, ".tokens") || strings.HasSuffix(k, "_count")
}

// secretPatterns find secrets and personal data inside free text. Order
// matters: cookies and tokens first, then PII.
var secretPatterns = []*regexp.Regexp{
	regexp.MustCompile(`(?i)\b(sso(?:-rw)?|cf_clearance|__cf_bm|_cfuvid)=[^;\s"']+`),
	regexp.MustCompile(`(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+`),
	regexp.MustCompile(`\bgp_[0-9a-f]{12}_[0-9A-Za-z]{40}\b`),
	regexp.MustCompile(`\bxai-[A-Za-z0-9]{16,}\b`),
	regexp.MustCompile(`\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*`),
	regexp.MustCompile(`[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}`),
	regexp.MustCompile(`\b\d{3}-\d{2}-\d{4}\b`),
	regexp.MustCompile(`(?:\+\d{1,3}[ .-]?)?\(?\b\d{3}\)?[ .-]\d{3}[ .-]\d{4}\b`),
}

// Scrub replaces secrets and personal data (emails, phone numbers, US
// social security numbers) in s with [redacted].
func Scrub(s string) string {
	if !mayHoldSecret(s) {
		return s
	}
	return scrubPatterns(s)
}

// mayHoldSecret reports whether s contains what one of the secret patterns
// needs: '=' (cookies), '@' (emails), nine or more digits with a separator
// (social security and phone numbers), or a fixed prefix of a key or token.
// Most log values, hex ids included, contain none, so one pass over the
// bytes replaces eight regular expressions.
func mayHoldSecret(s string) bool {
	digits, separated := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '=' || c == '@':
			return true
		case c >= '0' && c <= '9':
			digits++
		case c == '-' || c == '.' || c == ' ' || c == ')':
			separated = true
		}
	}
	return digits >= 9 && separated ||
		strings.Contains(s, "gp_") || strings.Contains(s, "xai-") || strings.Contains(s, "eyJ") ||
		containsFold(s, "bearer")
}

// containsFold reports whether s contains the lower-case ASCII word sub in
// any letter case.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		// ASCII letters differ from their lower case only in bit 0x20.
		if s[i]|0x20 == sub[0] && strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// scrubPatterns applies every secret pattern to s.
func scrubPatterns(s string) string {
	for _, re := range secretPatterns {
		if re.MatchString(s) {
			s = re.ReplaceAllString(s, secret.Redacted)
		}
	}
	return s
}

// secretKeyCache stores isSecretKey's result for attribute keys, which are
// a small fixed set in practice. It stops growing at maxCachedKeys.
var secretKeyCache sync.Map // of string to bool

const maxCachedKeys = 1024

var cachedKeys atomic.Int32

func isSecretKey(k string) bool {
	if v, ok := secretKeyCache.Load(k); ok {
		return v.(bool)
	}
	secret := secretKey(k)
	if cachedKeys.Load() < maxCachedKeys {
		if _, loaded := secretKeyCache.LoadOrStore(k, secret); !loaded {
			cachedKeys.Add(1)
		}
	}
	return secret
}

// secretKey reports whether values under key k are secret: it names a
// credential and is not a count.
func secretKey(k string) bool {
	k = strings.ToLower(k)
	if isCountKey(k) {
		return false
	}
	for _, s := range secretKeys {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

// scrubHandler removes secrets from every record before the wrapped handler
// sees it: values under secret-looking keys, and secret-looking text in the
// message and in every string or error value.
type scrubHandler struct{ next slog.Handler }

// NewScrubHandler wraps next so that no secret or personal data reaches it.
func NewScrubHandler(next slog.Handler) slog.Handler { return scrubHandler{next: next} }

func (h scrubHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h scrubHandler) Handle(ctx context.Context, r slog.Record) error {
	if recordClean(r) {
		return h.next.Handle(ctx, r)
	}
	out := slog.NewRecord(r.Time, r.Level, Scrub(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(scrubAttr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h scrubHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	clean := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		clean[i] = scrubAttr(a)
	}
	return scrubHandler{next: h.next.WithAttrs(clean)}
}

func (h scrubHandler) WithGroup(name string) slog.Handler {
	return scrubHandler{next: h.next.WithGroup(name)}
}

// recordClean reports whether scrubbing would leave r as it is, so that it
// can pass on without a copy: no secret key, and no message or string value
// that could hold a secret. Errors, groups and other values count as unclean
// and take the full path.
func recordClean(r slog.Record) bool {
	if mayHoldSecret(r.Message) {
		return false
	}
	clean := true
	r.Attrs(func(a slog.Attr) bool {
		clean = attrClean(a)
		return clean
	})
	return clean
}

func attrClean(a slog.Attr) bool {
	if isSecretKey(a.Key) {
		return false
	}
	switch a.Value.Kind() {
	case slog.KindString:
		return !mayHoldSecret(a.Value.String())
	case slog.KindInt64, slog.KindUint64, slog.KindFloat64, slog.KindBool, slog.KindDuration, slog.KindTime:
		return true
	}
	return false
}

func scrubAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		group := v.Group()
		clean := make([]any, len(group))
		for i, g := range group {
			clean[i] = scrubAttr(g)
		}
		return slog.Group(a.Key, clean...)
	}
	if isSecretKey(a.Key) {
		return slog.String(a.Key, secret.Redacted)
	}
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, Scrub(v.String()))
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return slog.String(a.Key, Scrub(err.Error()))
		}
		if s, ok := v.Any().(interface{ String() string }); ok {
			return slog.String(a.Key, Scrub(s.String()))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}
