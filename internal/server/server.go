// Package server assembles the HTTP server: the middleware chain, the /v1,
// /admin and health routes, and graceful shutdown.
package server

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/grokproxy/grokproxy/internal/api/openai"
	"github.com/grokproxy/grokproxy/internal/auth"
	"github.com/grokproxy/grokproxy/internal/config"
	"github.com/grokproxy/grokproxy/internal/observe"
	"github.com/grokproxy/grokproxy/internal/ratelimit"
	"github.com/grokproxy/grokproxy/internal/telemetry"
)

// Authenticator resolves API keys to principals.
type Authenticator interface {
	Authenticate(ctx context.Context, key string) (auth.Principal, error)
}

// Health reports the state of one component for /health.
type Health interface {
	// Check returns the component's status ("ok", "degraded" or "down")
	// and details; "down" on a required component makes /health a 503.
	Check(ctx context.Context) (status string, details map[string]any)
}

// Deps are the parts the server routes requests to.
type Deps struct {
	Config  config.Config
	Auth    Authenticator
	Limits  ratelimit.Limiter
	API     *openai.Handler
	Admin   http.Handler // serves /admin/…; nil leaves admin routes out
	Console http.Handler // serves /console/…; nil leaves the console out
	// Me serves /v1/me/…, a user's own data; nil leaves those routes out.
	Me       *openai.Me
	Registry *prometheus.Registry
	Metrics  *observe.Metrics
	// Components are checked by /health in this order.
	Components []NamedHealth
	// Ready reports whether /readyz should return 200, and the reason when not.
	Ready func(ctx context.Context) (bool, string)
	// Telemetry traces each request when tracing is on; nil traces
	// nothing.
	Telemetry *telemetry.Telemetry
	Log       *slog.Logger
}

// NamedHealth is a component of /health.
type NamedHealth struct {
	Name     string
	Required bool
	Health   Health
}

// Server is the gateway's HTTP handler.
type Server struct {
	cfg     config.Config
	auth    Authenticator
	limits  ratelimit.Limiter
	metrics *observe.Metrics
	log     *slog.Logger
	deps    Deps
	mux     *http.ServeMux
	handler http.Handler
}

// New builds the server and its routes.
func New(d Deps) *Server {
	s := &Server{cfg: d.Config, auth: d.Auth, limits: d.Limits, metrics: d.Metrics, log: d.Log, deps: d, mux: http.NewServeMux()}
	s.routes()
	s.handler = s.chain(s.mux)
	return s
}

// ServeHTTP serves one request through the middleware chain.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// chain wraps the router in the middleware shared by every route, outermost
// first.
func (s *Server) chain(h http.Handler) http.Handler {
	h = s.limitBody(h)
	h = s.cors(h)
	h = s.shedLoad(h)
	h = cleanPath(h)
	h = s.limitHeaders(h)
	h = s.recoverPanics(h)
	h = s.accessLog(h)
	h = s.trace(h)
	return s.identify(h)
}

// handle adapts a handler that returns an error.
func (s *Server) handle(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			openai.WriteError(w, r, s.log, err)
		}
	})
}

func (s *Server) routes() {
	v1 := func(h func(http.ResponseWriter, *http.Request) error) http.Handler {
		return s.allowIPs(s.cfg.IPAllowlist, s.authenticate(false, s.cfg.RequestTimeout, s.rateLimit(s.handle(h))))
	}
	s.mux.Handle("POST /v1/chat/completions", v1(s.deps.API.ServeChat))
	s.mux.Handle("GET /v1/models", v1(s.deps.API.ServeModels))
	s.mux.Handle("GET /v1/models/{model...}", v1(s.deps.API.ServeModel))
	s.mux.Handle("POST /v1/images/generations", v1(s.deps.API.ServeImages))
	// The token in an image link is its own credential: no API key.
	s.mux.Handle("GET /v1/images/files/{token}", s.allowIPs(s.cfg.IPAllowlist, s.deadline(s.handle(s.deps.API.ServeImageFile))))
	if s.deps.Me != nil {
		s.mux.Handle("GET /v1/me/export", v1(s.deps.Me.ServeExport))
		s.mux.Handle("DELETE /v1/me/data", v1(s.deps.Me.ServeErase))
	}

	open := func(h http.HandlerFunc) http.Handler { return s.allowIPs(s.cfg.IPAllowlist, h) }
	s.mux.Handle("GET /livez", open(s.livez))
	s.mux.Handle("GET /readyz", open(s.readyz))
	s.mux.Handle("GET /health", open(s.health))
	if s.cfg.MetricsEnabled && s.deps.Registry != nil {
		s.mux.Handle("GET /metrics", open(promhttp.HandlerFor(s.deps.Registry, promhttp.HandlerOpts{}).ServeHTTP))
	}
	if s.deps.Admin != nil {
		s.mux.Handle("/admin/", s.allowIPs(s.cfg.AdminIPAllowlist, s.authenticate(true, 0, s.deps.Admin)))
	}
	if s.deps.Console != nil {
		s.mux.Handle("/console/", s.allowIPs(s.cfg.AdminIPAllowlist, s.deps.Console))
	}
	s.mux.Handle("/", s.handle(s.notFound))
}

// deadline bounds a request by REQUEST_TIMEOUT; the upstream call is
// canceled with it. Authenticated routes get it from authenticate.
func (s *Server) deadline(next http.Handler) http.Handler {
	if s.cfg.RequestTimeout <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// notFound returns 404 for unknown routes, and 405 with an Allow header for
// known routes called with the wrong method.
func (s *Server) notFound(w http.ResponseWriter, r *http.Request) error {
	return openai.RouteError(w, r, s.mux, "/")
}

func (s *Server) livez(w http.ResponseWriter, r *http.Request) {
	writeJSONStatus(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.deps.Ready == nil {
		writeJSONStatus(w, http.StatusOK, map[string]string{"status": "ready"})
		return
	}
	ok, why := s.deps.Ready(r.Context())
	if !ok {
		writeJSONStatus(w, http.StatusServiceUnavailable, map[string]string{"status": "not_ready", "reason": why})
		return
	}
	writeJSONStatus(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	status, code := "ok", http.StatusOK
	components := make(map[string]any, len(s.deps.Components))
	for _, c := range s.deps.Components {
		st, details := c.Health.Check(ctx)
		if details == nil {
			details = map[string]any{}
		}
		details["status"] = st
		components[c.Name] = details
		switch {
		case st == "down" && c.Required:
			status, code = "down", http.StatusServiceUnavailable
		case st != "ok" && status == "ok":
			status = "degraded"
		}
	}
	writeJSONStatus(w, code, map[string]any{"status": status, "components": components})
}

func writeJSONStatus(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// HTTPServer returns an *http.Server for h with the gateway's timeouts and
// header cap from cfg. WriteTimeout stays 0 because streams may run for
// minutes; STREAM_WRITE_TIMEOUT bounds each write instead (see
// recorder) and REQUEST_TIMEOUT the whole request. The server's own
// header cap is twice MAX_HEADER_BYTES, so that requests just over the
// setting still get the 431 in OpenAI's format from limitHeaders.
func HTTPServer(cfg config.Config, h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Addr:              cfg.Addr(),
		Handler:           h,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    2 * cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}
