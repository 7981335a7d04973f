// Package xai is a loopback test double of the official xAI API, which
// follows OpenAI's wire format. It serves chat completions, streamed and
// not, with tool calls and with usage that counts reasoning tokens for
// reasoning models. It also lists models and generates PNG images. Tests
// inject failures per API key, in process or over HTTP.
//
// Routes:
//
//	POST   /v1/chat/completions         chat, JSON or server-sent events
//	GET    /v1/models                   models the key may use
//	GET    /v1/models/{id}              one model
//	POST   /v1/images/generations       PNG images as url or b64_json
//	GET    /images/{name}               generated images named by url answers
//	POST   /_emulator/faults            set a fault, DELETE clears
//	GET    /_emulator/stats             counters per key
//
// Every /v1 route needs "Authorization: Bearer <key>" with a listed key.
package xai

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Config sets up a Server. The zero value is usable but accepts no key.
type Config struct {
	// Keys are the API keys the server accepts.
	Keys []string
	// TokenDelay is the pause before each streamed chunk after the first.
	// Zero means no pause.
	TokenDelay time.Duration
	// Chunks is the number of response text chunks per chat. Zero means 10.
	Chunks int
	// Now is the clock for timestamps. Nil means time.Now.
	Now func() time.Time
	// Log receives one line per request (method and path). Nil discards.
	Log *slog.Logger
}

// RequestInfo is one request the server received, for test assertions.
// Header holds the API key, so it must not be logged.
type RequestInfo struct {
	Method string
	Path   string
	// Key is the API key the request authenticated with; empty when it
	// matched none.
	Key    string
	Header http.Header
	Body   []byte
}

// Server is the emulator. It is an http.Handler and is safe for concurrent
// use.
type Server struct {
	cfg    Config
	chunks int
	now    func() time.Time
	log    *slog.Logger
	mux    *http.ServeMux

	mu       sync.Mutex      // guards the fields below
	keys     map[string]*key // by key text
	faults   map[string]*Fault
	requests []RequestInfo
	images   map[string][]byte // PNG bytes by file name
	// lastUsage is the usage of the latest chat response.
	lastUsage Usage
}

// key is an accepted API key with its counters.
type key struct {
	chats  int
	images int
}

const defaultChunks = 10

// maxBodyBytes bounds the request body the server reads and records.
const maxBodyBytes = 32 << 20

// New returns a server for cfg.
func New(cfg Config) *Server {
	s := &Server{
		cfg:    cfg,
		chunks: cfg.Chunks,
		now:    cfg.Now,
		log:    cfg.Log,
		keys:   make(map[string]*key),
		faults: make(map[string]*Fault),
		images: make(map[string][]byte),
	}
	if s.chunks <= 0 {
		s.chunks = defaultChunks
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	for _, k := range cfg.Keys {
		s.AddKey(k)
	}
	s.routes()
	return s
}

func (s *Server) routes() {
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("POST /v1/chat/completions", s.authed(s.handleChat))
	s.mux.HandleFunc("GET /v1/models", s.authed(s.handleModels))
	s.mux.HandleFunc("GET /v1/models/{id}", s.authed(s.handleModel))
	s.mux.HandleFunc("POST /v1/images/generations", s.authed(s.handleImages))
	s.mux.HandleFunc("GET /images/{name}", s.handleImageFile)
	s.mux.HandleFunc("POST /_emulator/faults", s.handleSetFault)
	s.mux.HandleFunc("DELETE /_emulator/faults", s.handleClearFaults)
	s.mux.HandleFunc("GET /_emulator/stats", s.handleStats)
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "Some resource has not been found", "No route for "+r.Method+" "+r.URL.Path)
	})
}

// ServeHTTP logs and records the request, then routes it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.log.Info("request", "method", r.Method, "path", r.URL.Path)
	if strings.HasPrefix(r.URL.Path, "/v1/") {
		s.record(r)
	}
	s.mux.ServeHTTP(w, r)
}

// record appends r to the request log. It buffers the body and puts the
// copy back on r for the handler.
func (s *Server) record(r *http.Request) {
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(io.LimitReader(r.Body, maxBodyBytes))
		r.Body.Close()
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	info := RequestInfo{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body}
	s.mu.Lock()
	defer s.mu.Unlock()
	if k := bearer(r); s.keys[k] != nil {
		info.Key = k
	}
	s.requests = append(s.requests, info)
}

// AddKey makes the server accept k. Adding a known key keeps its counters.
func (s *Server) AddKey(k string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.keys[k]; !ok {
		s.keys[k] = &key{}
	}
}

// RemoveKey makes k an invalid key, as when its owner deletes it.
func (s *Server) RemoveKey(k string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.keys, k)
	delete(s.faults, k)
}

// Requests returns a copy of the log of /v1 requests, oldest first.
func (s *Server) Requests() []RequestInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// ChatCount returns how many chat requests authenticated with k, whatever
// their outcome, faults included.
func (s *Server) ChatCount(k string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.keys[k]; ok {
		return st.chats
	}
	return 0
}

// LastUsage returns the usage the latest chat answer reported.
func (s *Server) LastUsage() Usage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastUsage
}

func (s *Server) setLastUsage(u Usage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastUsage = u
}

func bearer(r *http.Request) string {
	k, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return ""
	}
	return strings.TrimSpace(k)
}

// authed wraps a /v1 handler: it rejects unknown keys with 401 and passes
// the key on.
func (s *Server) authed(h func(w http.ResponseWriter, r *http.Request, k string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		k := bearer(r)
		s.mu.Lock()
		_, ok := s.keys[k]
		s.mu.Unlock()
		if !ok {
			writeInvalidKey(w)
			return
		}
		h(w, r, k)
	}
}

// Error bodies of the xAI API: {"code":"<gRPC status text>","error":"…"}.
const (
	codeInvalidArgument = "Client specified an invalid argument"
	codeNotFound        = "Some resource has not been found"
	codeUnauthenticated = "The request does not have valid authentication credentials"
	codePermission      = "The caller does not have permission to execute the specified operation"
	codeExhausted       = "Some resource has been exhausted"
	codeUnavailable     = "The service is currently unavailable"
	codeInternal        = "Internal error"
)

func writeError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, map[string]string{"code": code, "error": message})
}

// writeInvalidKey rejects a missing or unknown key. The message never
// quotes the key.
func writeInvalidKey(w http.ResponseWriter) {
	writeError(w, http.StatusUnauthorized, codeUnauthenticated,
		"Incorrect API key provided. You can obtain an API key from the console.")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encode response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}
