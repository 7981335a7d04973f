package grokweb

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/grokproxy/grokproxy/internal/upstream"
)

// gRPC-style status codes that the web app puts in error bodies.
const (
	codePermissionDenied  = 7 // anti-bot rejection, or a blocked account with its marker
	codeResourceExhausted = 8 // rate limited
)

// Markers that the web app and its Cloudflare front put in error bodies.
// Only these fixed tokens decide an outcome, never free-form message text.
var (
	blockedMarkers      = [][]byte{[]byte("blocked-user")}
	credentialMarkers   = [][]byte{[]byte("invalid-credentials"), []byte("bad-credentials"), []byte("email-domain-rejected")}
	cloudflareMarkers   = [][]byte{[]byte("Just a moment..."), []byte("challenge-platform"), []byte("__cf_chl"), []byte("cf-chl-"), []byte("_cf_chl_opt")}
	maxErrorBodyBytes   = int64(64 << 10)
	maxErrorMessageRune = 300
)

// classifyHTTP decides the outcome of an HTTP response that is not a chat
// stream: any status other than 200, or a 200 that is a challenge page.
// body is the start of the response body.
func classifyHTTP(resp *http.Response, body []byte, now time.Time, sc scrubber) *upstream.Error {
	e := &upstream.Error{Status: resp.StatusCode}
	eb := parseErrorBody(body)
	if eb != nil {
		e.Code = eb.Code
	}
	html := isHTML(resp.Header.Get("Content-Type"))

	switch {
	case resp.StatusCode == http.StatusTooManyRequests || e.Code == codeResourceExhausted:
		e.Outcome = upstream.OutcomeRateLimited
		e.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), now)
	case containsAny(body, blockedMarkers):
		e.Outcome = upstream.OutcomeBlocked
	case html && (resp.StatusCode == http.StatusForbidden || containsAny(body, cloudflareMarkers)):
		e.Outcome = upstream.OutcomeEgressRejected
		e.Message = "Cloudflare challenge page"
		return e
	case resp.StatusCode == http.StatusUnauthorized || containsAny(body, credentialMarkers):
		e.Outcome = upstream.OutcomeUnauthorized
	case resp.StatusCode == http.StatusForbidden:
		e.Outcome = classifyForbidden(eb, body)
	case resp.StatusCode >= 500:
		e.Outcome = upstream.OutcomeUnavailable
	case resp.StatusCode >= 400:
		// 400 for this input, 404 for a conversation that is gone or owned
		// by another account, and the rest of 4xx.
		e.Outcome = upstream.OutcomeRejectedRequest
	default:
		e.Outcome = upstream.OutcomeUnavailable
		e.Message = fmt.Sprintf("unexpected status %d", resp.StatusCode)
		return e
	}
	e.Message = errorMessage(eb, resp.StatusCode, sc)
	return e
}

// classifyForbidden splits 403s. Code 7 and bodies that are empty or not
// JSON come from the anti-bot layer. A JSON error with another code rejects
// this request only, for example a mode above the account's tier.
func classifyForbidden(eb *errorBody, body []byte) upstream.Outcome {
	if eb == nil || eb.Code == codePermissionDenied || len(bytes.TrimSpace(body)) == 0 {
		return upstream.OutcomeEgressRejected
	}
	return upstream.OutcomeRejectedRequest
}

// classifyStreamError decides the outcome of an error found inside a 200
// stream. Before the first event the caller can still retry elsewhere, so
// the error keeps its own class. After it, every error breaks the stream.
func classifyStreamError(eb *errorBody, started bool, sc scrubber) *upstream.Error {
	e := &upstream.Error{Status: http.StatusOK, Code: eb.Code, Message: errorMessage(eb, 0, sc)}
	switch {
	case started:
		e.Outcome = upstream.OutcomeBrokenStream
	case eb.Code == codeResourceExhausted || eb.UsageLimitReached || eb.SystemErrCode == "rate_limit":
		e.Outcome = upstream.OutcomeRateLimited
	case strings.Contains(eb.Marker, "blocked-user") || strings.Contains(eb.Message, "blocked-user"):
		e.Outcome = upstream.OutcomeBlocked
	case eb.Code == codePermissionDenied:
		e.Outcome = upstream.OutcomeEgressRejected
	default:
		// Other clients of this protocol map other in-band codes to 502.
		e.Outcome = upstream.OutcomeUnavailable
	}
	return e
}

// classifyTransport decides the outcome of a request that got no HTTP
// response, or whose body failed while reading.
func classifyTransport(ctx context.Context, err error, started bool, sc scrubber) *upstream.Error {
	e := &upstream.Error{Err: sc.wrap(err)}
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		e.Outcome = upstream.OutcomeCanceled
		e.Message = "request canceled"
	case started:
		e.Outcome = upstream.OutcomeBrokenStream
		e.Message = "stream cut after the answer started"
	case isTimeout(err):
		e.Outcome = upstream.OutcomeUnavailable
		e.Message = "timed out waiting for upstream"
	default:
		e.Outcome = upstream.OutcomeUnavailable
		e.Message = "upstream unreachable"
	}
	return e
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// parseErrorBody reads the two JSON error shapes the web app uses:
// {"error":{"code":8,"message":…}} and {"code":"unauthorized:…","error":"…"}.
// It returns nil when body is not JSON.
func parseErrorBody(body []byte) *errorBody {
	var wrapped struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &wrapped) != nil {
		return nil
	}
	var eb errorBody
	if len(wrapped.Error) > 0 && wrapped.Error[0] == '{' {
		if json.Unmarshal(wrapped.Error, &eb) != nil {
			return &errorBody{}
		}
		return &eb
	}
	if json.Unmarshal(body, &eb) != nil {
		return &errorBody{}
	}
	var text string
	if json.Unmarshal(wrapped.Error, &text) == nil && eb.Message == "" {
		eb.Message = text
	}
	return &eb
}

// errorMessage builds the client-safe message: the upstream's own message
// when it has one, else the status text, scrubbed of credentials and cut
// to a readable length.
func errorMessage(eb *errorBody, status int, sc scrubber) string {
	msg := ""
	if eb != nil {
		msg = eb.Message
	}
	if msg == "" && status != 0 {
		msg = http.StatusText(status)
	}
	msg = sc.scrub(msg)
	if r := []rune(msg); len(r) > maxErrorMessageRune {
		msg = string(r[:maxErrorMessageRune]) + "…"
	}
	return msg
}

func isHTML(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "text/html" || mt == "application/xhtml+xml")
}

func containsAny(body []byte, markers [][]byte) bool {
	for _, m := range markers {
		if bytes.Contains(body, m) {
			return true
		}
	}
	return false
}

// retryAfter parses a Retry-After header: delay seconds or an HTTP date.
// It returns 0 when the header is missing, invalid or in the past.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil {
		return max(time.Duration(secs)*time.Second, 0)
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	return max(t.Sub(now), 0)
}

// scrubber removes credential text from strings bound for errors.
type scrubber []string

func (sc scrubber) scrub(s string) string {
	for _, v := range sc {
		if len(v) >= 4 {
			s = strings.ReplaceAll(s, v, "[redacted]")
		}
	}
	return s
}

// wrap returns err with its text scrubbed, while errors.Is and errors.As
// still see the original.
func (sc scrubber) wrap(err error) error {
	if err == nil {
		return nil
	}
	return &scrubbedError{msg: sc.scrub(err.Error()), err: err}
}

type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }
