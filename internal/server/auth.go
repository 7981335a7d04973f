package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/grokproxy/grokproxy/internal/api/openai"
	"github.com/grokproxy/grokproxy/internal/auth"
	"github.com/grokproxy/grokproxy/internal/observe"
)

// bearer returns the API key of a request: "Authorization: Bearer KEY", or
// the x-api-key header some clients send.
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return strings.TrimSpace(r.Header.Get("X-Api-Key"))
}

var errNoKey = &openai.Error{Status: http.StatusUnauthorized, Type: openai.TypeAuthentication, Code: "missing_api_key",
	Message: "You didn't provide an API key. Send it in an Authorization header: Authorization: Bearer YOUR_KEY."}

var errBadKey = &openai.Error{Status: http.StatusUnauthorized, Type: openai.TypeAuthentication, Code: "invalid_api_key",
	Message: "Incorrect API key provided."}

// authenticate resolves the API key to a principal. A valid key is never
// refused by the failed-authentication limit; an invalid one counts
// against the client address, which is refused with 429 once over it.
// A positive timeout bounds the rest of the request (REQUEST_TIMEOUT), set
// in the same context layer as the principal.
func (s *Server) authenticate(admin bool, timeout time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := bearer(r)
		if key == "" {
			openai.WriteError(w, r, s.log, errNoKey)
			return
		}
		p, err := s.auth.Authenticate(r.Context(), key)
		if err != nil {
			s.rejectKey(w, r, err)
			return
		}
		if admin && !p.Admin {
			openai.WriteError(w, r, s.log, &openai.Error{Status: http.StatusForbidden, Type: openai.TypePermission,
				Code: "admin_key_required", Message: "This route needs an admin key."})
			return
		}
		ctx := auth.NewContext(r.Context(), p)
		if timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

func (s *Server) rejectKey(w http.ResponseWriter, r *http.Request, err error) {
	ip := observe.ClientIP(r.Context())
	blocked, retry, lerr := s.limits.AuthFailure(r.Context(), ip)
	if lerr == nil && blocked {
		s.metrics.RateLimited.WithLabelValues("auth_failures").Inc()
		openai.WriteError(w, r, s.log, &openai.Error{Status: http.StatusTooManyRequests, Type: openai.TypeRateLimit,
			Code: "too_many_auth_failures", RetryAfter: retry,
			Message: "Too many failed authentication attempts from your address; wait before retrying."})
		return
	}
	switch {
	case errors.Is(err, auth.ErrBusy):
		openai.WriteError(w, r, s.log, &openai.Error{Status: http.StatusServiceUnavailable, Type: openai.TypeServer,
			Code: "auth_busy", RetryAfter: time.Second, Message: "The gateway is busy verifying keys; retry shortly.", Err: err})
	case errors.Is(err, auth.ErrInactive):
		openai.WriteError(w, r, s.log, &openai.Error{Status: http.StatusUnauthorized, Type: openai.TypeAuthentication,
			Code: "inactive_user", Message: "The user of this API key is inactive or expired."})
	case errors.Is(err, auth.ErrInvalidKey):
		openai.WriteError(w, r, s.log, errBadKey)
	default:
		openai.WriteError(w, r, s.log, err)
	}
}

// rateLimit applies the per-user request limit and the per-key concurrency
// cap, and sets the x-ratelimit headers before the handler writes.
func (s *Server) rateLimit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := auth.FromContext(r.Context())
		d, err := s.limits.AllowUser(r.Context(), p.UserID, p.RateLimitPerMinute)
		if err != nil {
			s.limiterUnavailable(w, r, err)
			return
		}
		// Canonical names, set directly, and one array for the three values.
		vals := []string{strconv.Itoa(d.Limit), strconv.Itoa(d.Remaining), formatReset(d.Reset)}
		h := w.Header()
		h["X-Ratelimit-Limit-Requests"] = vals[0:1:1]
		h["X-Ratelimit-Remaining-Requests"] = vals[1:2:2]
		h["X-Ratelimit-Reset-Requests"] = vals[2:3:3]
		if !d.Allowed {
			s.metrics.RateLimited.WithLabelValues("user").Inc()
			openai.WriteError(w, r, s.log, &openai.Error{Status: http.StatusTooManyRequests, Type: openai.TypeRateLimit,
				Code: "rate_limit_exceeded", Param: "", RetryAfter: d.RetryAfter,
				Message: fmt.Sprintf("Rate limit reached for requests per minute: limit %d per minute for this user. Retry after %d seconds.",
					d.Limit, openai.RetryAfterSeconds(d.RetryAfter))})
			return
		}
		if p.MaxConcurrent > 0 && p.KeyID != "" {
			release, ok, err := s.limits.Acquire(r.Context(), "key", p.KeyID, p.MaxConcurrent)
			if err != nil {
				s.limiterUnavailable(w, r, err)
				return
			}
			if !ok {
				s.metrics.RateLimited.WithLabelValues("key_concurrency").Inc()
				openai.WriteError(w, r, s.log, &openai.Error{Status: http.StatusTooManyRequests, Type: openai.TypeRateLimit,
					Code: "concurrency_limit_exceeded", RetryAfter: time.Second,
					Message: fmt.Sprintf("Concurrent request limit reached: at most %d requests at once for this key.", p.MaxConcurrent)})
				return
			}
			defer release()
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) limiterUnavailable(w http.ResponseWriter, r *http.Request, err error) {
	openai.WriteError(w, r, s.log, &openai.Error{Status: http.StatusServiceUnavailable, Type: openai.TypeServer,
		Code: "rate_limiter_unavailable", RetryAfter: 5 * time.Second,
		Message: "The rate limiter is unavailable, so requests are refused; retry shortly.", Err: err})
}

// formatReset renders a duration the way OpenAI's x-ratelimit-reset
// headers do, e.g. "1s", "6m0s" or "120ms".
func formatReset(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	if d < time.Second {
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	}
	return d.Round(time.Second).String()
}
