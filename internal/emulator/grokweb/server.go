// Package grokweb is a loopback test double of the Grok web app's REST API
// and chat gateway (grok.com). It streams the NDJSON chat frames and the
// WebSocket gateway events that public clients of that API parse, and it
// keeps per-account quota windows and conversations shared by both. It
// serves generated images and uploaded files under an assets path. Tests
// inject the documented failures per account, in process or over HTTP.
//
// Routes:
//
//	POST   /rest/app-chat/conversations/new               new conversation, NDJSON stream
//	POST   /rest/app-chat/conversations/{id}/responses    follow-up, NDJSON stream
//	GET    /ws/mgw/?uid=<user id>                         chat over the WebSocket gateway
//	POST   /rest/rate-limits                              quota of one mode
//	POST   /rest/media/imagine/quota_info                 media quota
//	POST   /rest/models                                   model catalog
//	GET    /rest/subscriptions                            subscription tier
//	GET    /api/auth/session                              login check
//	POST   /rest/app-chat/upload-file                     JSON base64 upload
//	POST   /http/upload-file-v2/direct                    multipart upload
//	GET    /assets/users/...  and  GET /users/...         assets (grok.com keeps them on assets.grok.com)
//	POST   /_emulator/faults, DELETE /_emulator/faults    fault control
//	GET    /_emulator/stats                               counters per account
//
// Every route except the control routes needs an sso cookie of a listed
// account.
package grokweb

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Account is one emulated grok.com login.
type Account struct {
	// SSO is the value of the sso cookie that logs in as this account.
	SSO string
	// Tier selects the quota table: TierBasic, TierSuper, TierHeavy or
	// TierUnlimited. Empty means TierUnlimited.
	Tier string
	// UserID is the account's user UUID, used in asset paths. Empty means
	// a UUID derived from SSO, stable across runs.
	UserID string
	// Email is reported by the login check. Empty means an address derived
	// from UserID.
	Email string
}

// Config sets up a Server. The zero value is usable but has no accounts.
type Config struct {
	Accounts []Account
	// TokenDelay is the pause before each streamed token frame after the
	// first frame. Zero means no pause.
	TokenDelay time.Duration
	// FirstByteDelay is the pause before the response headers of every chat.
	// Zero means no pause.
	FirstByteDelay time.Duration
	// Chunks is the number of answer token frames per chat. Zero means 20.
	Chunks int
	// Now is the clock for quota windows and timestamps. Nil means time.Now.
	Now func() time.Time
	// Log receives one line per request (method and path). Nil discards.
	Log *slog.Logger
	// RequireSSORW rejects requests whose sso-rw cookie is missing or
	// differs from sso, with the anti-bot 403, as grok.com has done since
	// about 2026-06.
	RequireSSORW bool
	// FlatFollowUps streams follow-up frames as {"result":{...}} instead of
	// {"result":{"response":{...}}}. Older clients saw both shapes.
	FlatFollowUps bool
	// RefuseUpgrade answers WebSocket upgrades on /ws/mgw/ with 404, as
	// grok.com did before August 2026.
	RefuseUpgrade bool
	// RefuseRESTChat answers the REST chat routes with 404, as grok.com
	// may once chat lives only on the WebSocket gateway.
	RefuseRESTChat bool
}

// RequestInfo is one request the server received, for test assertions.
// Header and Body are copies of what the client sent, cookies included, so
// they must not be logged.
type RequestInfo struct {
	Method string
	Path   string
	// Account is the UserID of the account the sso cookie logged in as;
	// empty when the cookie matched none.
	Account   string
	Time      time.Time
	RequestID string // x-xai-request-id header
	Header    http.Header
	Body      []byte
}

// Server is the emulator. It is an http.Handler and is safe for concurrent
// use.
type Server struct {
	cfg    Config
	chunks int
	now    func() time.Time
	log    *slog.Logger
	mux    *http.ServeMux

	mu            sync.Mutex          // guards the fields below
	accounts      map[string]*account // by SSO
	faults        map[string]*Fault   // by SSO
	requests      []RequestInfo
	conversations map[string]*conversation // by conversation id
	assets        map[string]asset         // by path "users/<uid>/..."
	gateway       []*GatewaySession        // WebSocket connections, oldest first
}

// account is an Account with its counters.
type account struct {
	Account
	chats int
	quota map[string]*window // by mode id
}

const defaultChunks = 20

// maxBodyBytes bounds the request body the server reads and records.
const maxBodyBytes = 32 << 20

// userNamespace derives stable user ids from sso values.
var userNamespace = uuid.MustParse("6f1c2a5e-8f0b-4c61-9a57-1f0d3c2b7e44")

// New returns a server for cfg. It panics when an account has an unknown
// tier, because that is a mistake in the test setup.
func New(cfg Config) *Server {
	s := &Server{
		cfg:           cfg,
		chunks:        cfg.Chunks,
		now:           cfg.Now,
		log:           cfg.Log,
		accounts:      make(map[string]*account),
		faults:        make(map[string]*Fault),
		conversations: make(map[string]*conversation),
		assets:        make(map[string]asset),
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
	for _, a := range cfg.Accounts {
		s.AddAccount(a)
	}
	s.routes()
	return s
}

func (s *Server) routes() {
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("POST /rest/app-chat/conversations/new", s.handleNewConversation)
	s.mux.HandleFunc("POST /rest/app-chat/conversations/{id}/responses", s.handleFollowUp)
	s.mux.HandleFunc("DELETE /rest/app-chat/conversations/soft/{id}", s.handleSoftDelete)
	s.mux.HandleFunc("GET /ws/mgw/", s.handleGateway)
	s.mux.HandleFunc("POST /rest/rate-limits", s.handleRateLimits)
	s.mux.HandleFunc("POST /rest/media/imagine/quota_info", s.handleMediaQuota)
	s.mux.HandleFunc("POST /rest/models", s.handleModels)
	s.mux.HandleFunc("GET /rest/subscriptions", s.handleSubscriptions)
	s.mux.HandleFunc("GET /api/auth/session", s.handleSession)
	s.mux.HandleFunc("POST /rest/app-chat/upload-file", s.handleUpload)
	s.mux.HandleFunc("POST /http/upload-file-v2/direct", s.handleUploadDirect)
	s.mux.HandleFunc("GET /assets/{path...}", s.handleAsset)
	s.mux.HandleFunc("GET /users/{path...}", s.handleAsset)
	s.mux.HandleFunc("POST /_emulator/faults", s.handleSetFault)
	s.mux.HandleFunc("DELETE /_emulator/faults", s.handleClearFaults)
	s.mux.HandleFunc("GET /_emulator/stats", s.handleStats)
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, codeNotFound, "Not found")
	})
}

// ServeHTTP logs and records the request, then routes it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.log.Info("request", "method", r.Method, "path", r.URL.Path)
	if !strings.HasPrefix(r.URL.Path, "/_emulator/") {
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
	info := RequestInfo{
		Method:    r.Method,
		Path:      r.URL.Path,
		Time:      s.now(),
		RequestID: r.Header.Get("x-xai-request-id"),
		Header:    r.Header.Clone(),
		Body:      body,
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.lookupLocked(r); a != nil {
		info.Account = a.UserID
	}
	s.requests = append(s.requests, info)
}

// AddAccount adds a or replaces the account with the same SSO. It panics
// on an unknown tier.
func (s *Server) AddAccount(a Account) {
	if a.Tier == "" {
		a.Tier = TierUnlimited
	}
	a.Tier = strings.ToLower(a.Tier)
	if !ValidTier(a.Tier) {
		panic(fmt.Sprintf("grokweb: unknown tier %q", a.Tier))
	}
	if a.UserID == "" {
		a.UserID = uuid.NewSHA1(userNamespace, []byte(a.SSO)).String()
	}
	if a.Email == "" {
		a.Email = "user-" + a.UserID[:8] + "@example.com"
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.accounts[a.SSO] = &account{Account: a, quota: make(map[string]*window)}
}

// RemoveAccount deletes the account with this SSO, so its cookie becomes
// an invalid login. Its conversations and assets stay.
func (s *Server) RemoveAccount(sso string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.accounts, sso)
	delete(s.faults, sso)
}

// Requests returns a copy of the request log, oldest first. Control routes
// under /_emulator/ are not recorded.
func (s *Server) Requests() []RequestInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]RequestInfo(nil), s.requests...)
}

// ChatCount returns how many chat requests (new conversations and
// follow-ups) logged in as the account with this SSO, whatever their
// outcome, faults and quota rejections included. A REST body with an
// empty message, and a gateway connection closed before it sent an item,
// are not chats.
func (s *Server) ChatCount(sso string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.accounts[sso]; ok {
		return a.chats
	}
	return 0
}

// lookupLocked returns the account that r's sso cookie logs in as, or nil.
func (s *Server) lookupLocked(r *http.Request) *account {
	c, err := r.Cookie("sso")
	if err != nil || c.Value == "" {
		return nil
	}
	return s.accounts[c.Value]
}

// authenticate returns a copy of the account r logs in as. When there is
// none, it writes the rejection grok.com sends and returns false.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (Account, bool) {
	s.mu.Lock()
	a := s.lookupLocked(r)
	s.mu.Unlock()
	if a == nil {
		writeInvalidLogin(w)
		return Account{}, false
	}
	if s.option(func(c Config) bool { return c.RequireSSORW }) {
		rw, err := r.Cookie("sso-rw")
		if err != nil || rw.Value != a.SSO {
			writeAntiBot(w)
			return Account{}, false
		}
	}
	return a.Account, true
}

// gRPC status codes that grok.com puts in its JSON error bodies.
const (
	codeInvalidArgument   = 3
	codeNotFound          = 5
	codePermissionDenied  = 7
	codeResourceExhausted = 8
	codeInternal          = 13
	codeUnavailable       = 14
	codeUnauthenticated   = 16
)

// rpcError is the body of grok.com's JSON errors.
type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Details []any  `json:"details"`
}

func writeError(w http.ResponseWriter, status, code int, message string) {
	writeJSON(w, status, map[string]rpcError{
		"error": {Code: code, Message: message, Details: []any{}},
	})
}

// writeInvalidLogin rejects an unknown or missing sso cookie.
// NOTE: grok.com's exact 401 body is not documented. Clients match the
// invalid-credentials marker in it, so the body carries that marker.
func writeInvalidLogin(w http.ResponseWriter) {
	writeError(w, http.StatusUnauthorized, codeUnauthenticated,
		"Invalid credentials [WKE=unauthorized:invalid-credentials]")
}

// writeAntiBot writes the anti-bot rejection, 403 with code 7.
func writeAntiBot(w http.ResponseWriter) {
	writeError(w, http.StatusForbidden, codePermissionDenied, "Request rejected by anti-bot rules.")
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

// decodeBody reads r's JSON body into v. It writes a 400 and returns false
// when the body is not valid JSON.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil && err != io.EOF {
		writeError(w, http.StatusBadRequest, codeInvalidArgument, "invalid JSON body: "+err.Error())
		return false
	}
	return true
}
