package admin

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/grokproxy/grokproxy/internal/api/openai"
	"github.com/grokproxy/grokproxy/internal/pool"
	"github.com/grokproxy/grokproxy/internal/secret"
	"github.com/grokproxy/grokproxy/internal/store"
)

// maxBulk bounds how many sessions one request may add.
const maxBulk = 1000

// newSession is one session to add. Grok web sessions carry cookie_text,
// xAI sessions carry api_key.
type newSession struct {
	Provider       string `json:"provider"`
	CookieText     string `json:"cookie_text"`
	APIKey         string `json:"api_key"`
	Label          string `json:"label"`
	ProxyURL       string `json:"proxy_url"`
	MaxConcurrency int    `json:"max_concurrency"`
	Weight         int    `json:"weight"`
}

// addSessionsBody is either one session or, with Sessions set, many.
type addSessionsBody struct {
	newSession
	Sessions []newSession `json:"sessions"`
}

// bulkResult is the outcome of one item of a bulk add.
type bulkResult struct {
	Index   int           `json:"index"`
	Session *pool.View    `json:"session,omitempty"`
	Error   *openai.Error `json:"error,omitempty"`
}

func (h *Handler) createSessions(w http.ResponseWriter, r *http.Request) error {
	var body addSessionsBody
	if err := decode(r, &body); err != nil {
		return err
	}
	if body.Sessions == nil {
		v, err := h.addSession(r, body.newSession, "")
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, v)
		return nil
	}
	if len(body.Sessions) == 0 || len(body.Sessions) > maxBulk {
		return openai.BadRequest("sessions", "invalid_value", "sessions must hold between 1 and %d items.", maxBulk)
	}
	out := list[bulkResult]{Object: "list", Data: make([]bulkResult, 0, len(body.Sessions))}
	for i, s := range body.Sessions {
		res := bulkResult{Index: i}
		v, err := h.addSession(r, s, "sessions["+strconv.Itoa(i)+"].")
		if err != nil {
			res.Error = openai.AsError(err)
		} else {
			res.Session = &v
		}
		out.Data = append(out.Data, res)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (h *Handler) addSession(r *http.Request, s newSession, param string) (pool.View, error) {
	provider := strings.TrimSpace(s.Provider)
	if provider == "" {
		provider = store.ProviderGrok
	}
	if !slices.Contains(h.Providers, provider) {
		return pool.View{}, openai.BadRequest(param+"provider", "invalid_value",
			"Unknown provider %q; this gateway serves %s.", truncate(provider, 32), strings.Join(h.Providers, ", "))
	}
	text, field := s.CookieText, "cookie_text"
	if provider == store.ProviderXAI {
		text, field = s.APIKey, "api_key"
	}
	if strings.TrimSpace(text) == "" {
		return pool.View{}, openai.BadRequest(param+field, "missing_required_parameter",
			"%s is required for provider %s.", field, provider)
	}
	cred, dedup, err := h.Parse(provider, text)
	if err != nil {
		// The parser's message never echoes the credential.
		return pool.View{}, openai.BadRequest(param+field, "invalid_value", "%s is not usable: %v.", field, err)
	}
	if s.MaxConcurrency < 0 || s.Weight < 0 {
		return pool.View{}, openai.BadRequest(param+"weight", "invalid_value", "weight and max_concurrency must not be negative.")
	}
	if len(s.Label) > 200 {
		return pool.View{}, openai.BadRequest(param+"label", "invalid_value", "label must be at most 200 characters.")
	}
	v, err := h.Pool.Add(r.Context(), pool.AddRequest{
		Provider: provider, Credential: cred, DedupKey: dedup, Label: s.Label,
		ProxyURL: secret.New(strings.TrimSpace(s.ProxyURL)), MaxConcurrency: s.MaxConcurrency, Weight: s.Weight,
	})
	if errors.Is(err, store.ErrConflict) {
		return pool.View{}, &openai.Error{Status: http.StatusConflict, Type: openai.TypeInvalidRequest, Code: "session_exists",
			Param: param + field, Message: "A session with the same credential is already in the pool."}
	}
	if err != nil {
		return pool.View{}, err
	}
	h.Log.Info("session added", "session_id", v.ID, "provider", provider)
	return v, nil
}

// sessionStatuses are the values of the status filter of the session list;
// "resting" selects healthy sessions that are cooling down.
var sessionStatuses = []string{store.StatusHealthy, "resting", store.StatusQuarantined, store.StatusExpired, store.StatusRevoked}

func (h *Handler) listSessions(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := store.SessionFilter{Status: q.Get("status"), Provider: q.Get("provider"), After: q.Get("after"), Limit: 100}
	if f.Status != "" && !slices.Contains(sessionStatuses, f.Status) {
		return openai.BadRequest("status", "invalid_value", "Unknown status %q; use one of %s.",
			truncate(f.Status, 32), strings.Join(sessionStatuses, ", "))
	}
	if f.Provider != "" && !slices.Contains(h.Providers, f.Provider) {
		return openai.BadRequest("provider", "invalid_value", "Unknown provider %q; this gateway serves %s.",
			truncate(f.Provider, 32), strings.Join(h.Providers, ", "))
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			return openai.BadRequest("limit", "invalid_value", "limit must be an integer between 1 and 1000.")
		}
		f.Limit = n
	}
	views, next := h.Pool.List(f)
	out := list[pool.View]{Object: "list", Data: views}
	if out.Data == nil {
		out.Data = []pool.View{}
	}
	if next != "" {
		out.NextCursor = &next
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (h *Handler) getSession(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	v, ok := h.Pool.Get(id)
	if !ok {
		return notFound("session", id)
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (h *Handler) deleteSession(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := h.Pool.Remove(r.Context(), id); err != nil {
		return storeError("session", id, err)
	}
	h.Log.Info("session deleted", "session_id", id)
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "object": "session", "deleted": true})
	return nil
}

type reasonBody struct {
	Reason string `json:"reason"`
}

// quarantineSession takes the reason from the query (?reason=) or from an
// optional JSON body; the query wins when both are set.
func (h *Handler) quarantineSession(w http.ResponseWriter, r *http.Request) error {
	var body reasonBody
	if r.ContentLength != 0 {
		if err := decode(r, &body); err != nil {
			return err
		}
	}
	if q := strings.TrimSpace(r.URL.Query().Get("reason")); q != "" {
		body.Reason = q
	}
	if body.Reason == "" {
		body.Reason = "admin"
	}
	id := r.PathValue("id")
	v, err := h.Pool.Quarantine(r.Context(), id, truncate(body.Reason, 200))
	if err != nil {
		return storeError("session", id, err)
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (h *Handler) activateSession(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	v, err := h.Pool.Activate(r.Context(), id)
	if err != nil {
		return storeError("session", id, err)
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (h *Handler) probeSession(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	v, err := h.Pool.Probe(r.Context(), id)
	if err != nil && errors.Is(err, store.ErrNotFound) {
		return notFound("session", id)
	}
	if err != nil && v.ID == "" {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

// statsSource is a pool that sums itself up for GET /admin/stats.
type statsSource interface {
	Stats() pool.Stats
}

// statsBody is the answer of GET /admin/stats: pool.Stats (counts by
// status, usable sessions, requests, failure rates and quota per provider,
// outbound route circuits) plus the circuit state of every provider.
type statsBody struct {
	pool.Stats
	Object   string            `json:"object"` // "stats"
	Circuits map[string]string `json:"circuits"`
}

func (h *Handler) stats(w http.ResponseWriter, r *http.Request) error {
	body := statsBody{Object: "stats", Circuits: make(map[string]string, len(h.Providers))}
	for _, p := range h.Providers {
		body.Circuits[p] = h.Pool.CircuitState(p)
	}
	if src, ok := h.Pool.(statsSource); ok {
		body.Stats = src.Stats()
	} else {
		body.Sessions = h.Pool.Counts()
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

func (h *Handler) resetCircuit(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Provider string `json:"provider"`
	}
	if r.ContentLength != 0 {
		if err := decode(r, &body); err != nil {
			return err
		}
	}
	reset := h.Providers
	if body.Provider != "" {
		if !slices.Contains(h.Providers, body.Provider) {
			return openai.BadRequest("provider", "invalid_value", "Unknown provider %q.", truncate(body.Provider, 32))
		}
		reset = []string{body.Provider}
	}
	for _, p := range reset {
		h.Pool.ResetCircuit(p)
		h.Log.Info("circuit reset", "provider", p)
	}
	return h.stats(w, r)
}
