package server

import (
	"net/http"
)

// trace wraps the request in a trace span when tracing is on.
func (s *Server) trace(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.deps.Telemetry.Tracing() {
			next.ServeHTTP(w, r)
			return
		}
		ctx, span := s.deps.Telemetry.StartRequest(r.Context(), r.Header, r.Method, routeLabel(r.URL.Path))
		rec := newRecorder(w, 0)
		defer func() {
			if rec.status == 0 {
				rec.status = http.StatusOK
			}
			span.End(rec.status)
		}()
		next.ServeHTTP(rec, r.WithContext(ctx))
	})
}
