package server

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/grokproxy/grokproxy/internal/api/openai"
	"github.com/grokproxy/grokproxy/internal/observe"
)

// recorder wraps the response of every request. It remembers the status
// code and bytes written, for the access log and metrics, and with a
// timeout it moves the connection's write deadline forward before each
// write and flush (see extend). Flush and Unwrap keep working for streams.
// The server's WriteTimeout stays 0 because a stream may run for minutes,
// so this bounds each write instead of the whole response.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64

	timeout  time.Duration // 0: no write deadline
	until    time.Time     // the deadline set last
	deadline interface{ SetWriteDeadline(time.Time) error }
}

// newRecorder wraps w, with a write deadline of timeout when it is
// positive and the connection supports deadlines.
func newRecorder(w http.ResponseWriter, timeout time.Duration) *recorder {
	rec := &recorder{ResponseWriter: w}
	if timeout > 0 {
		rec.deadline = writeDeadliner(w)
		if rec.deadline != nil {
			rec.timeout = timeout
		}
	}
	return rec
}

// writeDeadliner finds the writer under w that can set a write deadline,
// as http.ResponseController does, or returns nil (a test recorder, say).
func writeDeadliner(w http.ResponseWriter) interface{ SetWriteDeadline(time.Time) error } {
	for {
		switch t := w.(type) {
		case interface{ SetWriteDeadline(time.Time) error }:
			return t
		case interface{ Unwrap() http.ResponseWriter }:
			w = t.Unwrap()
		default:
			return nil
		}
	}
}

// extend moves the deadline to timeout from now, unless at least nine
// tenths of timeout remain. A stream writes many chunks a second, and each
// new deadline re-arms a runtime timer. A write therefore fails after
// blocking for between 0.9 and 1 times timeout.
func (s *recorder) extend() {
	if s.timeout == 0 {
		return
	}
	now := time.Now()
	if s.until.Sub(now) > s.timeout-s.timeout/10 {
		return
	}
	s.until = now.Add(s.timeout)
	_ = s.deadline.SetWriteDeadline(s.until)
}

func (s *recorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *recorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	s.extend()
	n, err := s.ResponseWriter.Write(b)
	s.bytes += int64(n)
	return n, err
}

func (s *recorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *recorder) Flush() { _ = s.FlushError() }

// FlushError flushes the buffered response and returns the write error, so
// that a stream detects a stuck or closed client at once.
func (s *recorder) FlushError() error {
	s.extend()
	return http.NewResponseController(s.ResponseWriter).Flush()
}

// identify takes a valid X-Request-ID from the client or makes one, and
// echoes it in the response. It decides the client address: the peer, or
// the last untrusted hop of X-Forwarded-For when the peer is a trusted
// proxy. Both go into the context in one layer.
func (s *Server) identify(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The canonical name, read and set directly: this runs on every request.
		var id string
		if v := r.Header["X-Request-Id"]; len(v) > 0 {
			id = v[0]
		}
		if !observe.ValidRequestID(id) {
			id = observe.NewRequestID()
		}
		w.Header()["X-Request-Id"] = []string{id}

		info := observe.Request{ID: id}
		host, ip := peerAddr(r.RemoteAddr)
		if contains(s.cfg.TrustedProxies, ip) {
			host = ""
			ip = forwardedFor(r.Header.Values("X-Forwarded-For"), ip, s.cfg.TrustedProxies)
			// A TLS-terminating proxy reports the client's scheme, which
			// links the gateway hands out must keep.
			if proto := strings.ToLower(strings.TrimSpace(r.Header.Get("X-Forwarded-Proto"))); proto == "https" || proto == "http" {
				info.Scheme = proto
			}
		}
		info.ClientIP = host
		if host == "" || !ip.Is4() || strings.Contains(host, ":") {
			// A dotted IPv4 peer is already in the form String gives,
			// which would cost an allocation; anything else is formatted.
			info.ClientIP = ip.String()
		}
		next.ServeHTTP(w, r.WithContext(observe.WithRequest(r.Context(), info)))
	})
}

// accessLog logs one line per request and counts it in the metrics. It
// never logs the query string, headers or body. Its recorder also bounds
// every write to the client by StreamWriteTimeout. A client that stops
// reading is cut once a write has blocked that long. The handler's write
// then fails, so the handler releases its session at once instead of
// waiting for the request deadline.
func (s *Server) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := newRecorder(w, s.cfg.StreamWriteTimeout)
		rec.extend()
		s.metrics.InFlight.Inc()
		defer s.metrics.InFlight.Dec()
		next.ServeHTTP(rec, r)
		// The server flushes what is buffered after the handler returns;
		// that write gets its own deadline too.
		rec.extend()
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		route := routeLabel(r.URL.Path)
		elapsed := time.Since(start)
		s.metrics.Requests.WithLabelValues(route, strconv.Itoa(rec.status)).Inc()
		s.metrics.RequestDuration.WithLabelValues(route).Observe(elapsed.Seconds())
		if route == "health" || route == "metrics" {
			return
		}
		ctx := r.Context()
		observe.LogAccess(ctx, s.log, observe.Access{
			RequestID: observe.RequestID(ctx), Method: r.Method, Path: r.URL.Path, Route: route,
			Status: rec.status, Bytes: rec.bytes, Duration: elapsed, ClientIP: observe.ClientIP(ctx),
		})
	})
}

// routeLabel maps a path to a bounded metric label.
func routeLabel(path string) string {
	switch {
	case path == "/v1/chat/completions":
		return "chat_completions"
	case path == "/v1/models":
		return "models"
	case strings.HasPrefix(path, "/v1/models/"):
		return "model"
	case path == "/v1/images/generations":
		return "images"
	case strings.HasPrefix(path, "/v1/files/images/"):
		return "image_file"
	case strings.HasPrefix(path, "/admin/"):
		return "admin"
	case path == "/health" || path == "/livez" || path == "/readyz":
		return "health"
	case path == "/metrics":
		return "metrics"
	case strings.HasPrefix(path, "/console"):
		return "console"
	}
	return "not_found"
}

// recoverPanics turns a handler panic into a 500 and a log line. A panic
// with http.ErrAbortHandler is passed on, so a stream can be aborted.
func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("handler panic", "request_id", observe.RequestID(r.Context()), "error", fmt.Sprint(v))
			openai.WriteError(w, r, s.log, fmt.Errorf("panic: %v", v))
		}()
		next.ServeHTTP(w, r)
	})
}

// cleanPath answers "//v1/…" and "/v1/…/" as the plain path, without a
// redirect.
func cleanPath(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if strings.Contains(p, "//") || (len(p) > 1 && strings.HasSuffix(p, "/") && !strings.HasPrefix(p, "/console/")) {
			for strings.Contains(p, "//") {
				p = strings.ReplaceAll(p, "//", "/")
			}
			if len(p) > 1 && p != "/console/" {
				p = strings.TrimSuffix(p, "/")
			}
			r.URL.Path = p
			r.URL.RawPath = ""
		}
		next.ServeHTTP(w, r)
	})
}

// cors answers preflights before authentication and adds CORS headers to
// every response.
func (s *Server) cors(next http.Handler) http.Handler {
	anyOrigin := len(s.cfg.CORSAllowedOrigins) == 0
	allowed := make(map[string]bool)
	for _, o := range s.cfg.CORSAllowedOrigins {
		if o == "*" {
			anyOrigin = true
		}
		allowed[o] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin != "" && (anyOrigin || allowed[origin]) {
			h := w.Header()
			if anyOrigin {
				h.Set("Access-Control-Allow-Origin", "*")
			} else {
				h.Set("Access-Control-Allow-Origin", origin)
				h.Add("Vary", "Origin")
			}
			h.Set("Access-Control-Expose-Headers", "X-Request-ID, Retry-After, x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests")
		}
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h := w.Header()
			h.Set("Access-Control-Allow-Methods", "GET, POST, PATCH, DELETE, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "authorization, content-type, x-api-key, x-request-id, openai-organization, openai-project, openai-beta, x-stainless-arch, x-stainless-lang, x-stainless-os, x-stainless-package-version, x-stainless-runtime, x-stainless-runtime-version, x-stainless-retry-count, x-stainless-timeout")
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// limitBody caps request bodies at MaxBodyBytes.
func (s *Server) limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > s.cfg.MaxBodyBytes {
			openai.WriteError(w, r, s.log, &openai.Error{Status: http.StatusRequestEntityTooLarge, Type: openai.TypeInvalidRequest,
				Code: "request_too_large", Message: fmt.Sprintf("The request body is larger than %d bytes.", s.cfg.MaxBodyBytes)})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
		next.ServeHTTP(w, r)
	})
}

// peerAddr returns the host part of a remote address and its address.
func peerAddr(remote string) (string, netip.Addr) {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, _ := netip.ParseAddr(host)
	return host, a.Unmap()
}

// forwardedFor walks X-Forwarded-For from the right and returns the first
// address that is not a trusted proxy.
func forwardedFor(values []string, peer netip.Addr, trusted []netip.Prefix) netip.Addr {
	var hops []string
	for _, v := range values {
		hops = append(hops, strings.Split(v, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return peer
		}
		a = a.Unmap()
		if !contains(trusted, a) {
			return a
		}
		peer = a
	}
	return peer
}

func contains(prefixes []netip.Prefix, a netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// allowIPs rejects clients outside the allowlist with a 403; an empty list
// allows everyone.
func (s *Server) allowIPs(list []netip.Prefix, next http.Handler) http.Handler {
	if len(list) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip, err := netip.ParseAddr(observe.ClientIP(r.Context()))
		if err != nil || !contains(list, ip) {
			openai.WriteError(w, r, s.log, &openai.Error{Status: http.StatusForbidden, Type: openai.TypePermission,
				Code: "ip_not_allowed", Message: "Requests from your address are not allowed."})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// exemptFromShedding reports whether path stays reachable under overload:
// probes and metrics must answer while the gateway sheds client traffic.
func exemptFromShedding(path string) bool {
	switch path {
	case "/livez", "/readyz", "/health", "/metrics":
		return true
	}
	return false
}

// shedLoad serves at most MaxInFlight requests at once and answers the
// excess at once with 503 and Retry-After, rather than queueing it. Health
// probes and metrics are not counted.
func (s *Server) shedLoad(next http.Handler) http.Handler {
	if s.cfg.MaxInFlight <= 0 {
		return next
	}
	slots := make(chan struct{}, s.cfg.MaxInFlight)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if exemptFromShedding(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		select {
		case slots <- struct{}{}:
		default:
			s.metrics.RateLimited.WithLabelValues("overload").Inc()
			openai.WriteError(w, r, s.log, &openai.Error{Status: http.StatusServiceUnavailable, Type: openai.TypeServer,
				Code: "server_overloaded", RetryAfter: time.Second,
				Message: "The gateway is serving as many requests as it can; retry after the time in Retry-After."})
			return
		}
		defer func() { <-slots }()
		next.ServeHTTP(w, r)
	})
}

// limitHeaders answers 431 in OpenAI's format when a request carries more
// header fields than MaxHeaderCount or more header bytes than
// MaxHeaderBytes. The HTTP server's own cap sits above MaxHeaderBytes (see
// HTTPServer), so only gross excess meets its plain-text 431.
func (s *Server) limitHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		count, size := 0, len(r.Method)+len(r.RequestURI)+len(r.Proto)+len("Host: ")+len(r.Host)+6
		for k, vs := range r.Header {
			count += len(vs)
			for _, v := range vs {
				size += len(k) + len(v) + 4 // ": " and CRLF
			}
		}
		switch {
		case s.cfg.MaxHeaderCount > 0 && count > s.cfg.MaxHeaderCount:
			openai.WriteError(w, r, s.log, &openai.Error{Status: http.StatusRequestHeaderFieldsTooLarge,
				Type: openai.TypeInvalidRequest, Code: "too_many_headers",
				Message: fmt.Sprintf("The request has %d header fields, above the limit of %d.", count, s.cfg.MaxHeaderCount)})
			return
		case s.cfg.MaxHeaderBytes > 0 && size > s.cfg.MaxHeaderBytes:
			openai.WriteError(w, r, s.log, &openai.Error{Status: http.StatusRequestHeaderFieldsTooLarge,
				Type: openai.TypeInvalidRequest, Code: "headers_too_large",
				Message: fmt.Sprintf("The request headers are larger than %d bytes.", s.cfg.MaxHeaderBytes)})
			return
		}
		next.ServeHTTP(w, r)
	})
}
