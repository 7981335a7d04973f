// Package admin serves the /admin API: sessions of the pool, users and
// their API keys, and the provider circuit breakers. Callers are admins;
// the server checks the key before a request reaches this package.
package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/grokproxy/grokproxy/internal/api/openai"
	"github.com/grokproxy/grokproxy/internal/pool"
	"github.com/grokproxy/grokproxy/internal/privacy"
	"github.com/grokproxy/grokproxy/internal/secret"
	"github.com/grokproxy/grokproxy/internal/store"
)

// Pool is the part of the session pool the admin API drives.
type Pool interface {
	Add(ctx context.Context, req pool.AddRequest) (pool.View, error)
	Remove(ctx context.Context, id string) error
	Quarantine(ctx context.Context, id, reason string) (pool.View, error)
	Activate(ctx context.Context, id string) (pool.View, error)
	Probe(ctx context.Context, id string) (pool.View, error)
	Get(id string) (pool.View, bool)
	List(f store.SessionFilter) ([]pool.View, string)
	Counts() map[string]int
	CircuitState(provider string) string
	ResetCircuit(provider string)
}

// Keys creates, rotates and revokes API keys.
type Keys interface {
	// CreateKey returns the stored key and its text, which is shown once.
	CreateKey(ctx context.Context, userID, name string, expiresAt time.Time) (store.APIKey, string, error)
	// RotateKey returns the new key; its text is empty when requestID
	// repeats an earlier rotation of the same key.
	RotateKey(ctx context.Context, id, requestID string, grace time.Duration) (store.APIKey, string, error)
	RevokeKey(ctx context.Context, id string) error
	// ForgetUser drops cached verifications of the user's keys, so a
	// change of limits or status applies to the next request.
	ForgetUser(userID string)
}

// Users is the part of the store that holds users and keys.
type Users interface {
	CreateUser(ctx context.Context, u *store.User) error
	User(ctx context.Context, id string) (store.User, error)
	Users(ctx context.Context) ([]store.User, error)
	UpdateUser(ctx context.Context, u *store.User) error
	DeleteUser(ctx context.Context, id string) error
	APIKey(ctx context.Context, id string) (store.APIKey, error)
	APIKeys(ctx context.Context, userID string) ([]store.APIKey, error)
}

// ParseCredential normalises the credential text of a new session for
// provider and returns it with its duplicate-detection key.
type ParseCredential func(provider, text string) (cred secret.Value, dedupKey string, err error)

// Handler serves /admin/…. Set every field before use.
type Handler struct {
	Pool      Pool
	Keys      Keys
	Users     Users
	Parse     ParseCredential
	Providers []string // providers with a configured client
	Log       *slog.Logger
	Now       func() time.Time
	// Audit records every call that changes state; nil records nothing.
	Audit AuditLog
	// Privacy serves user data export and erasure; nil answers 501.
	Privacy *privacy.Service
	// Retention runs the retention job on request; nil answers 501.
	Retention Retention
	// Generations lists request records for GET /admin/generations and
	// fills the metrics summary. When nil, both routes return 501.
	Generations GenerationStore
	// Content decides whether request records show prompt and response
	// text; the zero value shows none.
	Content ContentAccess
	// Summary serves GET /admin/metrics/summary. When nil, the route
	// returns 501.
	Summary *Summary
	// Checker serves POST /admin/sessions/{id}/check; nil answers 501.
	Checker SessionChecker

	mux *http.ServeMux
}

// ServeHTTP routes an admin request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.mux == nil {
		h.mux = h.routes()
	}
	h.mux.ServeHTTP(w, r)
}

func (h *Handler) routes() *http.ServeMux {
	mux := http.NewServeMux()
	handle := func(pattern string, fn func(http.ResponseWriter, *http.Request) error) {
		mux.Handle(pattern, h.audited(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := fn(w, r); err != nil {
				openai.WriteError(w, r, h.Log, err)
			}
		})))
	}
	handle("POST /admin/sessions", h.createSessions)
	handle("GET /admin/sessions", h.listSessions)
	handle("GET /admin/sessions/{id}", h.getSession)
	handle("DELETE /admin/sessions/{id}", h.deleteSession)
	handle("PATCH /admin/sessions/{id}/quarantine", h.quarantineSession)
	handle("PATCH /admin/sessions/{id}/activate", h.activateSession)
	handle("POST /admin/sessions/{id}/probe", h.probeSession)
	handle("POST /admin/sessions/{id}/check", h.checkSession)
	handle("GET /admin/stats", h.stats)
	handle("POST /admin/circuit/reset", h.resetCircuit)

	handle("POST /admin/users", h.createUser)
	handle("GET /admin/users", h.listUsers)
	handle("GET /admin/users/{id}", h.getUser)
	handle("PATCH /admin/users/{id}", h.updateUser)
	handle("DELETE /admin/users/{id}", h.deleteUser)
	handle("POST /admin/users/{id}/keys", h.createKey)
	handle("GET /admin/users/{id}/keys", h.listKeys)
	handle("DELETE /admin/keys/{id}", h.revokeKey)
	handle("POST /admin/keys/{id}/revoke", h.revokeKey)
	handle("POST /admin/keys/{id}/rotate", h.rotateKey)
	handle("GET /admin/audit", h.listAudit)
	handle("GET /admin/users/{id}/export", h.exportUser)
	handle("DELETE /admin/users/{id}/data", h.eraseUser)
	handle("POST /admin/retention/run", h.runRetention)
	handle("GET /admin/generations", h.listGenerations)
	handle("GET /admin/metrics/summary", h.metricsSummary)
	handle("/admin/", func(w http.ResponseWriter, r *http.Request) error {
		return openai.RouteError(w, r, mux, "/admin/")
	})
	return mux
}

// decode reads a JSON body into v, strictly: unknown fields are errors, so
// a misspelt setting is not silently ignored.
func decode(r *http.Request, v any) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return openai.BadRequest("", "invalid_body", "The request body could not be read.")
	}
	if len(body) == 0 {
		return openai.BadRequest("", "invalid_json", "The request body is empty; send a JSON object.")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return openai.BadRequest(typeErr.Field, "invalid_type", "Invalid type for %q.", typeErr.Field)
		}
		return openai.BadRequest("", "invalid_json", "The request body is not valid JSON for this route: %s.", jsonProblem(err))
	}
	return nil
}

func jsonProblem(err error) string {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return "syntax error at byte " + strconv.FormatInt(syn.Offset, 10)
	}
	msg := err.Error()
	if len(msg) > 120 {
		msg = msg[:120]
	}
	return msg
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// list is the paged list envelope of the admin API.
type list[T any] struct {
	Object     string  `json:"object"` // "list"
	Data       []T     `json:"data"`
	NextCursor *string `json:"next_cursor"`
}

func notFound(kind, id string) error {
	return &openai.Error{Status: http.StatusNotFound, Type: openai.TypeInvalidRequest, Code: kind + "_not_found",
		Message: "No " + kind + " with id " + strconv.Quote(truncate(id, 64)) + "."}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// storeError maps store sentinels to API errors.
func storeError(kind, id string, err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return notFound(kind, id)
	case errors.Is(err, store.ErrConflict):
		return &openai.Error{Status: http.StatusConflict, Type: openai.TypeInvalidRequest, Code: kind + "_exists",
			Message: "A " + kind + " with the same identity already exists.", Err: err}
	}
	return err
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
