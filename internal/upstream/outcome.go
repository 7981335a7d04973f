package upstream

import (
	"errors"
	"fmt"
	"time"
)

// Outcome is how one upstream call ended. The set is closed: the pool
// decides what happens to a session from the outcome alone.
type Outcome string

const (
	// OutcomeOK: the call succeeded.
	OutcomeOK Outcome = "ok"
	// OutcomeRateLimited: 429 or gRPC code 8. The session rests until the
	// reset time.
	OutcomeRateLimited Outcome = "rate_limited"
	// OutcomeUnauthorized: the login was rejected (401 or an invalid
	// credential marker). The pool confirms with a probe before it expires
	// the session.
	OutcomeUnauthorized Outcome = "unauthorized"
	// OutcomeBlocked: the account is marked blocked. The session is
	// quarantined.
	OutcomeBlocked Outcome = "blocked"
	// OutcomeEgressRejected: anti-bot 403 (code 7) or a Cloudflare
	// challenge. Charged to the egress, not the session.
	OutcomeEgressRejected Outcome = "egress_rejected"
	// OutcomeUnavailable: 5xx, a connect error or a timeout before the
	// first byte.
	OutcomeUnavailable Outcome = "unavailable"
	// OutcomeBrokenStream: an error or a cut after the first byte.
	OutcomeBrokenStream Outcome = "broken_stream"
	// OutcomeRejectedRequest: upstream refused this input (400, content
	// filter, unknown conversation). Not charged to the session.
	OutcomeRejectedRequest Outcome = "rejected_request"
	// OutcomeCanceled: the client went away. Not charged to anyone.
	OutcomeCanceled Outcome = "canceled"
)

// Outcomes lists every outcome, for metrics that initialise their labels.
var Outcomes = []Outcome{
	OutcomeOK, OutcomeRateLimited, OutcomeUnauthorized, OutcomeBlocked,
	OutcomeEgressRejected, OutcomeUnavailable, OutcomeBrokenStream,
	OutcomeRejectedRequest, OutcomeCanceled,
}

// Retryable reports whether the request may be tried on another session
// when the failure happened before the first byte reached the client.
func (o Outcome) Retryable() bool {
	switch o {
	case OutcomeRateLimited, OutcomeUnauthorized, OutcomeBlocked,
		OutcomeEgressRejected, OutcomeUnavailable, OutcomeBrokenStream:
		return true
	}
	return false
}

// Error is an upstream failure. Message is safe to show to the client (it
// never holds a credential); Err is for the operator's log.
type Error struct {
	Outcome    Outcome
	Status     int           // upstream HTTP status; 0 when there was no response
	Code       int           // upstream gRPC-style error code; 0 when none
	RetryAfter time.Duration // upstream reset time for rate limits; 0 when unknown
	Message    string
	Err        error
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("upstream %s", e.Outcome)
	if e.Status != 0 {
		msg += fmt.Sprintf(" (status %d)", e.Status)
	}
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// OutcomeOf returns the outcome of err: OutcomeOK for nil, the Error's
// outcome when err wraps an *Error, and OutcomeUnavailable otherwise.
func OutcomeOf(err error) Outcome {
	if err == nil {
		return OutcomeOK
	}
	var ue *Error
	if errors.As(err, &ue) {
		return ue.Outcome
	}
	return OutcomeUnavailable
}
