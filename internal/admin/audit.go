package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/grokproxy/grokproxy/internal/api/openai"
	"github.com/grokproxy/grokproxy/internal/auth"
	"github.com/grokproxy/grokproxy/internal/observe"
	"github.com/grokproxy/grokproxy/internal/privacy"
	"github.com/grokproxy/grokproxy/internal/retention"
	"github.com/grokproxy/grokproxy/internal/store"
)

// AuditLog is the part of the store that keeps the admin audit trail.
type AuditLog interface {
	AppendAuditEvent(ctx context.Context, e *store.AuditEvent) error
	AuditEvents(ctx context.Context, f store.AuditEventFilter) ([]store.AuditEvent, error)
}

// Retention runs the retention job once.
type Retention interface {
	RunOnce(ctx context.Context) (retention.Result, error)
}

// adminActions names the audit action of each route that changes state.
// A route missing here still gets audited, under a name derived from its
// pattern (see actionOf).
var adminActions = map[string]string{
	"POST /admin/sessions":                  "session.create",
	"DELETE /admin/sessions/{id}":           "session.delete",
	"PATCH /admin/sessions/{id}/quarantine": "session.quarantine",
	"PATCH /admin/sessions/{id}/activate":   "session.activate",
	"POST /admin/sessions/{id}/probe":       "session.probe",
	"POST /admin/circuit/reset":             "circuit.reset",
	"POST /admin/users":                     "user.create",
	"PATCH /admin/users/{id}":               "user.update",
	"DELETE /admin/users/{id}":              "user.delete",
	"POST /admin/users/{id}/keys":           "key.create",
	"DELETE /admin/keys/{id}":               "key.revoke",
	"POST /admin/keys/{id}/revoke":          "key.revoke",
	"POST /admin/keys/{id}/rotate":          "key.rotate",
}

// selfAudited routes write their own, more detailed audit event.
var selfAudited = map[string]bool{
	"DELETE /admin/users/{id}/data": true,
	"POST /admin/retention/run":     true,
}

// maxCapturedBody is how much of a response the audit wrapper keeps to
// find the id of a created record.
const maxCapturedBody = 64 << 10

// audited wraps the handler of pattern so that a call that may change
// state (any method but GET, HEAD and OPTIONS) leaves an audit event after
// the handler ran, with the status it answered. The event holds ids and
// the route, never the request or response body.
func (h *Handler) audited(pattern string, next http.Handler) http.Handler {
	if h.Audit == nil || selfAudited[pattern] || !strings.Contains(pattern, " ") {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			next.ServeHTTP(w, r)
			return
		}
		rec := &captureWriter{ResponseWriter: w, status: http.StatusOK}
		start := time.Now()
		next.ServeHTTP(rec, r)
		h.recordAction(r, pattern, rec, time.Since(start))
	})
}

func (h *Handler) recordAction(r *http.Request, pattern string, rec *captureWriter, took time.Duration) {
	details := map[string]any{"route": pattern, "status": rec.status,
		"duration_ms": took.Milliseconds()}
	// The target is the record the path names, else the one created.
	target := r.PathValue("id")
	created := createdIDs(rec.body.Bytes())
	switch {
	case target == "" && len(created) == 1:
		target = created[0]
	case len(created) > 0 && (len(created) > 1 || created[0] != target):
		details["ids"] = created
	}
	ev := &store.AuditEvent{
		Actor: actorOf(r.Context()), Action: actionOf(pattern), Target: target,
		ClientIP: observe.ClientIP(r.Context()), RequestID: observe.RequestID(r.Context()),
		Details: details,
	}
	// The action is done; a lost event is for the operator, not the caller.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer cancel()
	if err := h.Audit.AppendAuditEvent(ctx, ev); err != nil {
		h.Log.Error("admin audit event not written", "error", err, "action", ev.Action,
			"request_id", ev.RequestID)
	}
}

// actorOf names the caller: a user id, or for a static admin key
// "static-" and the key's digest-based id. Never the key itself.
func actorOf(ctx context.Context) string {
	p, ok := auth.FromContext(ctx)
	switch {
	case !ok:
		return "unknown"
	case p.Static:
		return "static-" + p.UserID
	}
	return p.UserID
}

// actionOf returns the audit action of a route pattern: from adminActions,
// or else the path's fixed segments and the method, such as
// "sessions.import.post".
func actionOf(pattern string) string {
	if a, ok := adminActions[pattern]; ok {
		return a
	}
	method, path, _ := strings.Cut(pattern, " ")
	var parts []string
	for _, seg := range strings.Split(strings.TrimPrefix(path, "/admin/"), "/") {
		if seg != "" && !strings.HasPrefix(seg, "{") {
			parts = append(parts, seg)
		}
	}
	return strings.Join(append(parts, strings.ToLower(method)), ".")
}

// createdIDs returns the top-level "id" of a JSON object, or the ids of
// the records in its "data" list, at most 50.
func createdIDs(body []byte) []string {
	var v struct {
		ID   string `json:"id"`
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if len(body) == 0 || json.Unmarshal(body, &v) != nil {
		return nil
	}
	if v.ID != "" {
		return []string{v.ID}
	}
	var ids []string
	for _, d := range v.Data {
		if d.ID != "" && len(ids) < 50 {
			ids = append(ids, d.ID)
		}
	}
	return ids
}

// captureWriter records the status and the start of the body.
type captureWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
	body   bytes.Buffer
}

func (c *captureWriter) WriteHeader(code int) {
	if !c.wrote {
		c.status, c.wrote = code, true
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *captureWriter) Write(b []byte) (int, error) {
	c.wrote = true
	if room := maxCapturedBody - c.body.Len(); room > 0 {
		c.body.Write(b[:min(room, len(b))])
	}
	return c.ResponseWriter.Write(b)
}

func (c *captureWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// auditView is an audit event as GET /admin/audit shows it.
type auditView struct {
	Object    string         `json:"object"` // "audit_event"
	Seq       int64          `json:"seq"`
	ID        string         `json:"id"`
	At        time.Time      `json:"at"`
	Actor     string         `json:"actor"`
	Action    string         `json:"action"`
	Target    string         `json:"target"`
	ClientIP  string         `json:"client_ip"`
	RequestID string         `json:"request_id"`
	Details   map[string]any `json:"details"`
	PrevHash  string         `json:"prev_hash"`
	Hash      string         `json:"hash"`
}

// listAudit serves GET /admin/audit?limit=N&cursor=SEQ, newest first. The
// cursor is the next_cursor of the page before.
func (h *Handler) listAudit(w http.ResponseWriter, r *http.Request) error {
	if h.Audit == nil {
		return errNotConfigured("audit trail")
	}
	f := store.AuditEventFilter{Limit: store.DefaultAuditPage}
	q := r.URL.Query()
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return openai.BadRequest("limit", "invalid_value", "limit must be an integer in 1-1000.")
		}
		f.Limit = n
	}
	if v := q.Get("cursor"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return openai.BadRequest("cursor", "invalid_value", "cursor must be the next_cursor of an earlier page.")
		}
		f.BeforeSeq = n
	}
	events, err := h.Audit.AuditEvents(r.Context(), f)
	if err != nil {
		return err
	}
	out := list[auditView]{Object: "list", Data: []auditView{}}
	for _, e := range events {
		details := e.Details
		if details == nil {
			details = map[string]any{}
		}
		out.Data = append(out.Data, auditView{Object: "audit_event", Seq: e.Seq, ID: e.ID, At: e.At,
			Actor: e.Actor, Action: e.Action, Target: e.Target, ClientIP: e.ClientIP,
			RequestID: e.RequestID, Details: details, PrevHash: e.PrevHash, Hash: e.Hash})
	}
	if len(events) == f.Limit && events[len(events)-1].Seq > 1 {
		next := strconv.FormatInt(events[len(events)-1].Seq, 10)
		out.NextCursor = &next
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// exportUser serves GET /admin/users/{id}/export.
func (h *Handler) exportUser(w http.ResponseWriter, r *http.Request) error {
	if h.Privacy == nil {
		return errNotConfigured("data export")
	}
	out, err := h.Privacy.Export(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if out.User == nil && len(out.Generations) == 0 && len(out.Conversations) == 0 {
		return notFound("user", r.PathValue("id"))
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, out)
	return nil
}

// eraseUser serves DELETE /admin/users/{id}/data.
func (h *Handler) eraseUser(w http.ResponseWriter, r *http.Request) error {
	if h.Privacy == nil {
		return errNotConfigured("data erasure")
	}
	out, err := h.Privacy.Erase(r.Context(), r.PathValue("id"), privacy.Actor{
		ID: actorOf(r.Context()), ClientIP: observe.ClientIP(r.Context()),
		RequestID: observe.RequestID(r.Context()),
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// runRetention serves POST /admin/retention/run: one run of the retention
// job, which leaves its own audit event.
func (h *Handler) runRetention(w http.ResponseWriter, r *http.Request) error {
	if h.Retention == nil {
		return errNotConfigured("retention job")
	}
	res, err := h.Retention.RunOnce(r.Context())
	if errors.Is(err, retention.ErrLocked) {
		return &openai.Error{Status: http.StatusConflict, Type: openai.TypeInvalidRequest,
			Code: "retention_running", Message: "The retention job is running elsewhere; try again later."}
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "retention_run",
		"generations": res.Generations, "sessions": res.Sessions})
	return nil
}

func errNotConfigured(what string) error {
	return &openai.Error{Status: http.StatusNotImplemented, Type: openai.TypeServer, Code: "not_configured",
		Message: "The " + what + " is not configured on this gateway."}
}
