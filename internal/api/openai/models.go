package openai

import (
	"net/http"

	"github.com/grokproxy/grokproxy/internal/auth"
	"github.com/grokproxy/grokproxy/internal/catalog"
)

type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"` // "model"
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

type modelList struct {
	Object string        `json:"object"` // "list"
	Data   []modelObject `json:"data"`
}

func toModelObject(m catalog.Model) modelObject {
	return modelObject{ID: m.ID, Object: "model", Created: m.Created, OwnedBy: m.OwnedBy}
}

// ServeModels handles GET /v1/models: the models the caller may use that
// some usable session can serve now.
func (h *Handler) ServeModels(w http.ResponseWriter, r *http.Request) error {
	p, _ := auth.FromContext(r.Context())
	list := modelList{Object: "list", Data: []modelObject{}}
	for _, m := range h.Catalog.Models() {
		if allowed(p, m) && h.servable(m) {
			list.Data = append(list.Data, toModelObject(m))
		}
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

// ServeModel handles GET /v1/models/{model}. Every model of the table the
// caller may use is found, servable now or not, as OpenAI does for models
// that exist.
func (h *Handler) ServeModel(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("model")
	m, ok := h.Catalog.Lookup(id)
	p, _ := auth.FromContext(r.Context())
	if !ok || !allowed(p, m) {
		return ModelNotFound(id)
	}
	obj := toModelObject(m)
	obj.ID = id
	writeJSON(w, http.StatusOK, obj)
	return nil
}

func (h *Handler) servable(m catalog.Model) bool {
	for _, r := range m.Routes {
		if h.Clients[r.Provider] != nil && h.Pool.Usable(r.Provider) > 0 {
			return true
		}
	}
	return false
}
