package admin

import (
	"context"
	"errors"
	"net/http"

	"github.com/grokproxy/grokproxy/internal/store"
	"github.com/grokproxy/grokproxy/internal/upstream/grokweb"
)

// SessionChecker checks one stored session against its upstream without
// spending chat quota.
type SessionChecker interface {
	// CheckSession returns store.ErrNotFound for an unknown id. Upstream
	// failures are part of the report, not errors.
	CheckSession(ctx context.Context, id string) (SessionCheck, error)
}

// SessionCheck is the response body of POST /admin/sessions/{id}/check: the
// session, its provider and what the check learned. For a grok session
// the report covers login, tier, quota per mode, the chat transports and
// the selector styles. For an xai session it covers the API key, with the
// model list standing in as the one transport, "api". It never carries
// the credential.
type SessionCheck struct {
	SessionID string `json:"session_id"`
	Provider  string `json:"provider"`
	grokweb.Report
}

func (h *Handler) checkSession(w http.ResponseWriter, r *http.Request) error {
	if h.Checker == nil {
		return errNotConfigured("session check")
	}
	id := r.PathValue("id")
	rep, err := h.Checker.CheckSession(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return notFound("session", id)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rep)
	return nil
}
