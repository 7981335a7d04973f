package xai

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/grokproxy/grokproxy/internal/upstream"
)

const (
	maxErrorBodyBytes   = 64 << 10
	maxErrorMessageRune = 300
)

// classify decides the outcome of a response whose status is not 200,
// from the status code alone:
//
//   - 429: rate_limited, resting until the reset that the headers give.
//   - 401: unauthorized; the pool confirms with a probe before it
//     expires the key.
//   - 402 and 403: blocked. xAI returns 403 when the key's team has no
//     credits left or the key lacks permission for the model or endpoint.
//     Both last until an operator acts, so the key is quarantined and
//     the health check probes it again, rather than being charged as a
//     failure on every request.
//   - 408 and 5xx: unavailable.
//   - any other 4xx (400, 404 unknown model, 413, 422): rejected_request,
//     reported to the caller and not charged to the key.
func classify(resp *http.Response, body []byte, now time.Time, sc scrubber) *upstream.Error {
	e := &upstream.Error{Status: resp.StatusCode}
	switch s := resp.StatusCode; {
	case s == http.StatusTooManyRequests:
		e.Outcome = upstream.OutcomeRateLimited
		e.RetryAfter = resetAfter(resp.Header, now)
	case s == http.StatusUnauthorized:
		e.Outcome = upstream.OutcomeUnauthorized
	case s == http.StatusPaymentRequired || s == http.StatusForbidden:
		e.Outcome = upstream.OutcomeBlocked
	case s == http.StatusRequestTimeout || s >= 500:
		e.Outcome = upstream.OutcomeUnavailable
	case s >= 400:
		e.Outcome = upstream.OutcomeRejectedRequest
	default:
		e.Outcome = upstream.OutcomeUnavailable
		e.Message = fmt.Sprintf("unexpected status %d", s)
		return e
	}
	e.Message = errorMessage(body, resp.StatusCode, sc)
	return e
}

// errorMessage returns the message of an error body, with secrets removed
// and the length capped. The xAI API sends {"code":"…","error":"…"}; an
// OpenAI-style {"error":{"message":"…"}} is read too.
func errorMessage(body []byte, status int, sc scrubber) string {
	var flat struct {
		Error json.RawMessage `json:"error"`
		Code  any             `json:"code"`
	}
	msg := ""
	if json.Unmarshal(body, &flat) == nil && len(flat.Error) > 0 {
		var text string
		var nested struct {
			Message string `json:"message"`
		}
		switch {
		case json.Unmarshal(flat.Error, &text) == nil:
			msg = text
		case json.Unmarshal(flat.Error, &nested) == nil:
			msg = nested.Message
		}
	}
	if msg == "" {
		msg = http.StatusText(status)
	}
	msg = sc.scrub(msg)
	if utf8.RuneCountInString(msg) > maxErrorMessageRune {
		msg = string([]rune(msg)[:maxErrorMessageRune]) + "…"
	}
	return msg
}

// resetAfter returns how long a rate-limited key should rest. Retry-After
// (seconds or an HTTP date) wins. Otherwise the x-ratelimit-reset-requests
// and x-ratelimit-reset-tokens headers count: those whose matching
// x-ratelimit-remaining-* header is 0, or all of them when no remaining
// header is sent, and the longest wins. Zero means unknown.
func resetAfter(h http.Header, now time.Time) time.Duration {
	if d := retryAfter(h.Get("Retry-After"), now); d > 0 {
		return d
	}
	var longest time.Duration
	for _, kind := range []string{"requests", "tokens"} {
		remaining := h.Get("x-ratelimit-remaining-" + kind)
		if remaining != "" && strings.TrimSpace(remaining) != "0" {
			continue
		}
		longest = max(longest, parseReset(h.Get("x-ratelimit-reset-"+kind), now))
	}
	return longest
}

func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil && secs > 0 {
		return time.Duration(secs * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// parseReset reads a reset header: a Go-style duration such as "1s",
// "6m0s" or "12ms" (OpenAI's format), plain seconds, or a unix time in
// seconds.
func parseReset(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return d
	}
	secs, err := strconv.ParseFloat(v, 64)
	if err != nil || secs <= 0 {
		return 0
	}
	// A value past a billion seconds is a point in time, not a wait.
	if secs > 1e9 {
		return max(time.Unix(int64(secs), 0).Sub(now), 0)
	}
	return time.Duration(secs * float64(time.Second))
}

// scrubber removes a session's secrets from text that may reach a client
// or a log: the API key, the proxy URL and its password, and anything that
// looks like an xAI key, masked or not.
type scrubber struct{ secrets []string }

func newScrubber(cred upstream.Credential) scrubber {
	var sc scrubber
	for _, s := range []string{cred.Secret.Reveal(), cred.ProxyURL.Reveal()} {
		if s != "" {
			sc.secrets = append(sc.secrets, s)
		}
	}
	if u, err := url.Parse(cred.ProxyURL.Reveal()); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			sc.secrets = append(sc.secrets, pw)
		}
	}
	return sc
}

// keyPattern matches xAI API keys, including the masked form that error
// messages quote ("xai-…abcd", "xa***cd").
var keyPattern = regexp.MustCompile(`\bxa[i*][-*][^\s"',.]*`)

func (sc scrubber) scrub(s string) string {
	for _, secret := range sc.secrets {
		s = strings.ReplaceAll(s, secret, "[redacted]")
	}
	return keyPattern.ReplaceAllString(s, "[redacted]")
}
