package server

import (
	"net/http"

	"github.com/grokproxy/grokproxy/internal/observe"
)

// trace puts the request's logger, bound to its request id, in the
// context, and wraps the request in a trace span when tracing is on. It
// runs inside requestID, so the id is known.
func (s *Server) trace(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		ctx = observe.WithLogger(ctx, s.log.With("request_id", observe.RequestID(ctx)))
		if !s.deps.Telemetry.Tracing() {
			next.ServeHTTP(w, r.WithContext(ctx))
			return
		}
		ctx, span := s.deps.Telemetry.StartRequest(ctx, r.Header, r.Method, routeLabel(r.URL.Path))
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			if rec.status == 0 {
				rec.status = http.StatusOK
			}
			span.End(rec.status)
		}()
		next.ServeHTTP(rec, r.WithContext(ctx))
	})
}
