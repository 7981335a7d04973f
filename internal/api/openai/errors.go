// Package openai serves the OpenAI-compatible /v1 API: chat completions,
// streamed and not, and the model list.
package openai

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/grokproxy/grokproxy/internal/observe"
)

// OpenAI error types.
const (
	TypeInvalidRequest = "invalid_request_error"
	TypeAuthentication = "authentication_error"
	TypePermission     = "permission_error"
	TypeNotFound       = "not_found_error"
	TypeRateLimit      = "rate_limit_error"
	TypeServer         = "server_error"
	TypeUpstream       = "upstream_error"
)

// Error is a failure reported to the client in OpenAI's error format.
// Message is sent to the client; Err is logged and never sent.
type Error struct {
	Status     int    // HTTP status, e.g. 429
	Type       string // OpenAI error type, e.g. "rate_limit_error"
	Code       string // OpenAI error code; empty when none applies
	Param      string // request field at fault; empty when none
	Message    string
	RetryAfter time.Duration // sent as Retry-After (whole seconds, at least 1) when set
	Err        error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%d %s: %s: %v", e.Status, e.Type, e.Message, e.Err)
	}
	return fmt.Sprintf("%d %s: %s", e.Status, e.Type, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// BadRequest returns a 400 invalid_request_error about param.
func BadRequest(param, code, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Type: TypeInvalidRequest, Param: param, Code: code,
		Message: fmt.Sprintf(format, args...)}
}

// ModelNotFound returns the 404 for an unknown or forbidden model id.
func ModelNotFound(model string) *Error {
	return &Error{Status: http.StatusNotFound, Type: TypeInvalidRequest, Code: "model_not_found", Param: "model",
		Message: fmt.Sprintf("The model %q does not exist or you do not have access to it.", model)}
}

// errorBody is the wire form {"error":{"message","type","param","code"}}.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Message   string  `json:"message"`
	Type      string  `json:"type"`
	Param     *string `json:"param"`
	Code      *string `json:"code"`
	RequestID string  `json:"request_id,omitempty"`
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// AsError converts any error to an *Error. An error that is not one
// becomes a generic 500; its cause stays in Err for the log.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Status: http.StatusInternalServerError, Type: TypeServer, Code: "internal_error",
		Message: "The server had an error while processing your request.", Err: err}
}

// Body returns the JSON error object for e, with the request id.
func (e *Error) Body(requestID string) []byte {
	b, _ := json.Marshal(errorBody{Error: errorDetail{
		Message: e.Message, Type: e.Type, Param: nullable(e.Param), Code: nullable(e.Code), RequestID: requestID,
	}})
	return b
}

// WriteError renders err in OpenAI's format and logs its cause once: at
// Error for 5xx, at Debug otherwise.
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	e := AsError(err)
	reqID := observe.RequestID(r.Context())
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(RetryAfterSeconds(e.RetryAfter)))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Status)
	w.Write(e.Body(reqID))

	level := slog.LevelDebug
	if e.Status >= 500 {
		level = slog.LevelError
	}
	if log.Enabled(r.Context(), level) {
		attrs := []slog.Attr{slog.Int("status", e.Status), slog.String("type", e.Type), slog.String("code", e.Code)}
		if e.Err != nil {
			attrs = append(attrs, slog.String("error", e.Err.Error()))
		}
		log.LogAttrs(r.Context(), level, "request failed", attrs...)
	}
}

// RetryAfterSeconds rounds d up to whole seconds, at least 1.
func RetryAfterSeconds(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return s
}

// MarshalJSON renders the inner error object {"message","type","param",
// "code"}, for bodies that report several errors at once.
func (e *Error) MarshalJSON() ([]byte, error) {
	return json.Marshal(errorDetail{Message: e.Message, Type: e.Type, Param: nullable(e.Param), Code: nullable(e.Code)})
}

// RouteError returns the error for a request that no route of mux serves:
// 405 with an Allow header when the path has routes for other methods, and
// 404 otherwise. catchAll is the pattern of the handler calling it, which
// does not count as a route.
func RouteError(w http.ResponseWriter, r *http.Request, mux *http.ServeMux, catchAll string) *Error {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodPut, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := mux.Handler(probe); pattern != "" && pattern != catchAll {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 && r.Method != http.MethodOptions {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		return &Error{Status: http.StatusMethodNotAllowed, Type: TypeInvalidRequest, Code: "method_not_allowed",
			Message: "Method " + r.Method + " is not allowed on " + r.URL.Path + "; use " + strings.Join(allow, " or ") + "."}
	}
	return &Error{Status: http.StatusNotFound, Type: TypeInvalidRequest, Code: "unknown_url",
		Message: "Unknown request URL: " + r.Method + " " + r.URL.Path + "."}
}
