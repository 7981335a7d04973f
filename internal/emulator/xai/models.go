package xai

import (
	"fmt"
	"net/http"
)

// modelObject is a model in the API's list format.
type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

// modelsCreated is the creation time shown for every model (2025-02-17).
const modelsCreated = 1739750400

// handleModels serves GET /v1/models. A key with a never-ending
// unauthorized, forbidden or server-error fault fails here too, so a
// health probe reports a dead key as dead. Rate limits do not apply here.
func (s *Server) handleModels(w http.ResponseWriter, r *http.Request, k string) {
	if f, ok := s.peekFault(k); ok && f.Kind != FaultRateLimited && writeFault(w, f) {
		return
	}
	data := make([]modelObject, 0, len(models))
	for _, m := range models {
		data = append(data, modelObject{ID: m.ID, Object: "model", Created: modelsCreated, OwnedBy: "xai"})
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}

// handleModel serves GET /v1/models/{id}.
func (s *Server) handleModel(w http.ResponseWriter, r *http.Request, k string) {
	m, ok := findModel(r.PathValue("id"))
	if !ok {
		writeError(w, http.StatusNotFound, codeNotFound, fmt.Sprintf("The model %s does not exist.", r.PathValue("id")))
		return
	}
	writeJSON(w, http.StatusOK, modelObject{ID: m.ID, Object: "model", Created: modelsCreated, OwnedBy: "xai"})
}

// peekFault returns the never-ending fault of key k without spending it:
// a fault with Times 0 models a key that stays dead, blocked or down.
func (s *Server) peekFault(k string) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.faults[k]; ok && f.Times == 0 {
		return *f, true
	}
	return Fault{}, false
}
