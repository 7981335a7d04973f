package openai

import (
	"encoding/json"
	"log/slog"
	"net/http"

	"github.com/grokproxy/grokproxy/internal/auth"
	"github.com/grokproxy/grokproxy/internal/observe"
	"github.com/grokproxy/grokproxy/internal/privacy"
)

// Me serves the routes through which users reach their own data with
// their own key: GET /v1/me/export and DELETE /v1/me/data. Static keys
// (API_PASSWORD, ADMIN_API_KEYS) belong to no user and are refused.
type Me struct {
	Privacy *privacy.Service
	Log     *slog.Logger
}

var errNeedOwnKey = &Error{Status: http.StatusForbidden, Type: TypePermission, Code: "user_key_required",
	Message: "This route needs the API key of a user; static keys have no user data."}

// ServeExport returns every record of the caller as JSON.
func (m *Me) ServeExport(w http.ResponseWriter, r *http.Request) error {
	p, ok := auth.FromContext(r.Context())
	if !ok || p.Static || p.UserID == "" {
		return errNeedOwnKey
	}
	out, err := m.Privacy.Export(r.Context(), p.UserID)
	if err != nil {
		return err
	}
	writeMeJSON(w, out)
	return nil
}

// ServeErase erases every record of the caller, their keys included, so
// the key that made the call stops working.
func (m *Me) ServeErase(w http.ResponseWriter, r *http.Request) error {
	p, ok := auth.FromContext(r.Context())
	if !ok || p.Static || p.UserID == "" {
		return errNeedOwnKey
	}
	out, err := m.Privacy.Erase(r.Context(), p.UserID, privacy.Actor{
		ID: p.UserID, ClientIP: observe.ClientIP(r.Context()), RequestID: observe.RequestID(r.Context()),
	})
	if err != nil {
		return err
	}
	writeMeJSON(w, out)
	return nil
}

func writeMeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	json.NewEncoder(w).Encode(v)
}
