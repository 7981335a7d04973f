package admin

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/grokproxy/grokproxy/internal/api/openai"
	"github.com/grokproxy/grokproxy/internal/observe"
	"github.com/grokproxy/grokproxy/internal/store"
)

// userView is a user as the admin API shows it.
type userView struct {
	ID                  string            `json:"id"`
	Object              string            `json:"object"` // "user"
	Name                string            `json:"name"`
	Role                string            `json:"role"`
	Active              bool              `json:"active"`
	RateLimitPerMinute  *int              `json:"rate_limit_per_minute"`
	MaxConcurrentPerKey int               `json:"max_concurrent_per_key"`
	Models              []string          `json:"models"`
	ExpiresAt           *time.Time        `json:"expires_at"`
	CreatedAt           time.Time         `json:"created_at"`
	UpdatedAt           time.Time         `json:"updated_at"`
	Metadata            map[string]string `json:"metadata,omitempty"`
}

func viewUser(u store.User) userView {
	models := u.Models
	if models == nil {
		models = []string{}
	}
	return userView{ID: u.ID, Object: "user", Name: u.Name, Role: u.Role, Active: u.Active,
		RateLimitPerMinute: u.RateLimitPerMinute, MaxConcurrentPerKey: u.MaxConcurrentPerKey, Models: models,
		ExpiresAt: timeOrNil(u.ExpiresAt), CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt, Metadata: u.Metadata}
}

// keyView is an API key without its secret.
type keyView struct {
	ID          string     `json:"id"`
	Object      string     `json:"object"` // "api_key"
	UserID      string     `json:"user_id"`
	Name        string     `json:"name"`
	Prefix      string     `json:"prefix"`
	CreatedAt   time.Time  `json:"created_at"`
	LastUsedAt  *time.Time `json:"last_used_at"`
	ExpiresAt   *time.Time `json:"expires_at"`
	RevokedAt   *time.Time `json:"revoked_at"`
	RotatedFrom string     `json:"rotated_from,omitempty"`
	// Key is the key text, present only in the answer that created it.
	Key string `json:"key,omitempty"`
}

func viewKey(k store.APIKey) keyView {
	return keyView{ID: k.ID, Object: "api_key", UserID: k.UserID, Name: k.Name, Prefix: k.Prefix,
		CreatedAt: k.CreatedAt, LastUsedAt: timeOrNil(k.LastUsedAt), ExpiresAt: timeOrNil(k.ExpiresAt),
		RevokedAt: timeOrNil(k.RevokedAt), RotatedFrom: k.RotatedFrom}
}

// userPatch holds the fields of a user create or update; nil means unset.
// RateLimitPerMinute distinguishes absent from null through its own type.
type userPatch struct {
	Name                *string           `json:"name"`
	Role                *string           `json:"role"`
	Active              *bool             `json:"active"`
	RateLimitPerMinute  optionalInt       `json:"rate_limit_per_minute"`
	MaxConcurrentPerKey *int              `json:"max_concurrent_per_key"`
	Models              *[]string         `json:"models"`
	ExpiresAt           optionalTime      `json:"expires_at"`
	Metadata            map[string]string `json:"metadata"`
}

// optionalInt is a JSON field that may be absent, null or a number.
type optionalInt struct {
	Set   bool
	Value *int
}

func (o *optionalInt) UnmarshalJSON(b []byte) error {
	o.Set = true
	if string(b) == "null" {
		o.Value = nil
		return nil
	}
	var n int
	if err := jsonUnmarshal(b, &n); err != nil {
		return err
	}
	o.Value = &n
	return nil
}

// optionalTime is a JSON field that may be absent, null or an RFC 3339 time.
type optionalTime struct {
	Set   bool
	Value time.Time
}

func (o *optionalTime) UnmarshalJSON(b []byte) error {
	o.Set = true
	if string(b) == "null" {
		o.Value = time.Time{}
		return nil
	}
	return jsonUnmarshal(b, &o.Value)
}

func (p userPatch) apply(u *store.User) error {
	if p.Name != nil {
		name := strings.TrimSpace(*p.Name)
		if name == "" || len(name) > 200 {
			return openai.BadRequest("name", "invalid_value", "name must hold 1 to 200 characters.")
		}
		u.Name = name
	}
	if p.Role != nil {
		if *p.Role != store.RoleUser && *p.Role != store.RoleAdmin {
			return openai.BadRequest("role", "invalid_value", "role must be %q or %q.", store.RoleUser, store.RoleAdmin)
		}
		u.Role = *p.Role
	}
	if p.Active != nil {
		u.Active = *p.Active
	}
	if p.RateLimitPerMinute.Set {
		if v := p.RateLimitPerMinute.Value; v != nil && (*v < 1 || *v > 1_000_000) {
			return openai.BadRequest("rate_limit_per_minute", "invalid_value",
				"rate_limit_per_minute must be between 1 and 1000000, or null for the default.")
		}
		u.RateLimitPerMinute = p.RateLimitPerMinute.Value
	}
	if p.MaxConcurrentPerKey != nil {
		if *p.MaxConcurrentPerKey < 0 || *p.MaxConcurrentPerKey > 10_000 {
			return openai.BadRequest("max_concurrent_per_key", "invalid_value",
				"max_concurrent_per_key must be between 0 (no cap) and 10000.")
		}
		u.MaxConcurrentPerKey = *p.MaxConcurrentPerKey
	}
	if p.Models != nil {
		u.Models = *p.Models
	}
	if p.ExpiresAt.Set {
		u.ExpiresAt = p.ExpiresAt.Value
	}
	if p.Metadata != nil {
		u.Metadata = p.Metadata
	}
	return nil
}

func (h *Handler) createUser(w http.ResponseWriter, r *http.Request) error {
	var p userPatch
	if err := decode(r, &p); err != nil {
		return err
	}
	if p.Name == nil {
		return openai.BadRequest("name", "missing_required_parameter", "name is required.")
	}
	now := h.Now()
	u := store.User{ID: "usr_" + randomHex(12), Role: store.RoleUser, Active: true, CreatedAt: now, UpdatedAt: now}
	if err := p.apply(&u); err != nil {
		return err
	}
	if err := h.Users.CreateUser(r.Context(), &u); err != nil {
		return storeError("user", u.ID, err)
	}
	h.Log.Info("user created", "user_id", u.ID, "role", u.Role)
	writeJSON(w, http.StatusCreated, viewUser(u))
	return nil
}

func (h *Handler) listUsers(w http.ResponseWriter, r *http.Request) error {
	users, err := h.Users.Users(r.Context())
	if err != nil {
		return err
	}
	out := list[userView]{Object: "list", Data: make([]userView, 0, len(users))}
	for _, u := range users {
		out.Data = append(out.Data, viewUser(u))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (h *Handler) getUser(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	u, err := h.Users.User(r.Context(), id)
	if err != nil {
		return storeError("user", id, err)
	}
	writeJSON(w, http.StatusOK, viewUser(u))
	return nil
}

func (h *Handler) updateUser(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	var p userPatch
	if err := decode(r, &p); err != nil {
		return err
	}
	u, err := h.Users.User(r.Context(), id)
	if err != nil {
		return storeError("user", id, err)
	}
	if err := p.apply(&u); err != nil {
		return err
	}
	u.UpdatedAt = h.Now()
	if err := h.Users.UpdateUser(r.Context(), &u); err != nil {
		return storeError("user", id, err)
	}
	h.Keys.ForgetUser(u.ID)
	h.Log.Info("user updated", "user_id", u.ID)
	writeJSON(w, http.StatusOK, viewUser(u))
	return nil
}

func (h *Handler) deleteUser(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	keys, err := h.Users.APIKeys(r.Context(), id)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	for _, k := range keys {
		if k.RevokedAt.IsZero() {
			if err := h.Keys.RevokeKey(r.Context(), k.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
	}
	if err := h.Users.DeleteUser(r.Context(), id); err != nil {
		return storeError("user", id, err)
	}
	h.Keys.ForgetUser(id)
	h.Log.Info("user deleted", "user_id", id)
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "object": "user", "deleted": true})
	return nil
}

func (h *Handler) createKey(w http.ResponseWriter, r *http.Request) error {
	userID := r.PathValue("id")
	var body struct {
		Name      string    `json:"name"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if r.ContentLength != 0 {
		if err := decode(r, &body); err != nil {
			return err
		}
	}
	if len(body.Name) > 200 {
		return openai.BadRequest("name", "invalid_value", "name must be at most 200 characters.")
	}
	if !body.ExpiresAt.IsZero() && !body.ExpiresAt.After(h.Now()) {
		return openai.BadRequest("expires_at", "invalid_value", "expires_at must be in the future.")
	}
	if _, err := h.Users.User(r.Context(), userID); err != nil {
		return storeError("user", userID, err)
	}
	k, text, err := h.Keys.CreateKey(r.Context(), userID, body.Name, body.ExpiresAt)
	if err != nil {
		return storeError("api_key", userID, err)
	}
	h.Log.Info("api key created", "user_id", userID, "key_id", k.ID)
	v := viewKey(k)
	v.Key = text
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, v)
	return nil
}

func (h *Handler) listKeys(w http.ResponseWriter, r *http.Request) error {
	userID := r.PathValue("id")
	if _, err := h.Users.User(r.Context(), userID); err != nil {
		return storeError("user", userID, err)
	}
	keys, err := h.Users.APIKeys(r.Context(), userID)
	if err != nil {
		return err
	}
	out := list[keyView]{Object: "list", Data: make([]keyView, 0, len(keys))}
	for _, k := range keys {
		out.Data = append(out.Data, viewKey(k))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (h *Handler) revokeKey(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := h.Keys.RevokeKey(r.Context(), id); err != nil {
		return storeError("api_key", id, err)
	}
	k, err := h.Users.APIKey(r.Context(), id)
	if err != nil {
		return storeError("api_key", id, err)
	}
	h.Log.Info("api key revoked", "key_id", id)
	writeJSON(w, http.StatusOK, viewKey(k))
	return nil
}

// rotateKey mints a replacement key. The old key keeps working for the
// grace period. A repeated call with the same request id (Idempotency-Key
// or X-Request-ID header, or request_id in the body) returns the key the
// first call made, without its text.
func (h *Handler) rotateKey(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	var body struct {
		GraceSeconds *int   `json:"grace_seconds"`
		RequestID    string `json:"request_id"`
	}
	if r.ContentLength != 0 {
		if err := decode(r, &body); err != nil {
			return err
		}
	}
	grace := time.Hour
	if body.GraceSeconds != nil {
		if *body.GraceSeconds < 0 || *body.GraceSeconds > 30*24*3600 {
			return openai.BadRequest("grace_seconds", "invalid_value", "grace_seconds must be between 0 and 2592000.")
		}
		grace = time.Duration(*body.GraceSeconds) * time.Second
	}
	reqID := body.RequestID
	if reqID == "" {
		reqID = r.Header.Get("Idempotency-Key")
	}
	if reqID == "" {
		reqID = observe.RequestID(r.Context())
	}
	k, text, err := h.Keys.RotateKey(r.Context(), id, truncate(reqID, 128), grace)
	if err != nil {
		return storeError("api_key", id, err)
	}
	h.Log.Info("api key rotated", "key_id", id, "new_key_id", k.ID)
	v := viewKey(k)
	v.Key = text
	status := http.StatusCreated
	if text == "" {
		status = http.StatusOK
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, v)
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n/2)
	rand.Read(b)
	return hex.EncodeToString(b)
}
