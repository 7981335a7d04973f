// Package catalog maps the public model ids that clients send to the
// providers and upstream models that serve them.
package catalog

import (
	"fmt"
	"os"
	"slices"
	"sort"

	"gopkg.in/yaml.v3"
)

// Model kinds.
const (
	KindChat  = "chat"
	KindImage = "image"
)

// Model is one public model id.
type Model struct {
	ID      string   `yaml:"id"`
	Aliases []string `yaml:"aliases,omitempty"`
	Kind    string   `yaml:"kind"` // KindChat or KindImage
	// Routes lists who can serve the model, in order of preference; a
	// request falls back to the next route when no session of the first
	// provider is usable.
	Routes  []Route `yaml:"routes"`
	OwnedBy string  `yaml:"owned_by,omitempty"`
	Created int64   `yaml:"created,omitempty"` // unix seconds shown by /v1/models
}

// Route is one provider's name for a model.
type Route struct {
	Provider string `yaml:"provider"` // "grok" or "xai"
	Upstream string `yaml:"upstream"` // Grok web mode id, or xAI model id
}

// Catalog is an immutable model table. It is safe for concurrent use.
type Catalog struct {
	models []Model
	byID   map[string]*Model // ids and aliases
}

// created is the timestamp shown for built-in models (2025-02-17).
const created = 1739750400

// builtin is the default table. Grok web routes use the mode ids of the
// modeId selector (auto, fast, expert, heavy), which grok.com has accepted
// since about March 2026.
var builtin = []Model{
	{ID: "grok-3", Kind: KindChat, Routes: []Route{{"grok", "fast"}, {"xai", "grok-3"}}},
	{ID: "grok-3-mini", Kind: KindChat, Routes: []Route{{"xai", "grok-3-mini"}, {"grok", "fast"}}},
	{ID: "grok-4", Aliases: []string{"grok-4-auto", "grok-latest"}, Kind: KindChat, Routes: []Route{{"grok", "auto"}, {"xai", "grok-4"}}},
	{ID: "grok-4-fast", Aliases: []string{"grok-4-fast-non-reasoning"}, Kind: KindChat, Routes: []Route{{"grok", "fast"}, {"xai", "grok-4-fast-non-reasoning"}}},
	{ID: "grok-4-expert", Aliases: []string{"grok-4-reasoning", "grok-4-fast-reasoning"}, Kind: KindChat, Routes: []Route{{"grok", "expert"}, {"xai", "grok-4-fast-reasoning"}}},
	{ID: "grok-4-heavy", Kind: KindChat, Routes: []Route{{"grok", "heavy"}}},
	{ID: "grok-imagine", Kind: KindImage, Routes: []Route{{"grok", "imagine"}, {"xai", "grok-2-image"}}},
}

// Builtin returns the built-in model table.
func Builtin() *Catalog {
	c, err := New(builtin)
	if err != nil {
		panic(err) // the built-in table is checked by tests
	}
	return c
}

// New builds a catalog, rejecting duplicate ids and models without routes.
func New(models []Model) (*Catalog, error) {
	c := &Catalog{models: make([]Model, len(models)), byID: make(map[string]*Model)}
	copy(c.models, models)
	for i := range c.models {
		m := &c.models[i]
		if m.Kind == "" {
			m.Kind = KindChat
		}
		if m.OwnedBy == "" {
			m.OwnedBy = "xai"
		}
		if m.Created == 0 {
			m.Created = created
		}
		if err := c.add(m); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *Catalog) add(m *Model) error {
	if m.ID == "" {
		return fmt.Errorf("model without an id")
	}
	if m.Kind != KindChat && m.Kind != KindImage {
		return fmt.Errorf("model %q: kind %q is not chat or image", m.ID, m.Kind)
	}
	if len(m.Routes) == 0 {
		return fmt.Errorf("model %q has no routes", m.ID)
	}
	for _, r := range m.Routes {
		if r.Provider != "grok" && r.Provider != "xai" {
			return fmt.Errorf("model %q: provider %q is not grok or xai", m.ID, r.Provider)
		}
		if r.Upstream == "" {
			return fmt.Errorf("model %q: route for %s has no upstream model", m.ID, r.Provider)
		}
	}
	for _, name := range append([]string{m.ID}, m.Aliases...) {
		if _, dup := c.byID[name]; dup {
			return fmt.Errorf("model id %q appears twice", name)
		}
		c.byID[name] = m
	}
	return nil
}

// Serves reports whether some route of m goes to provider.
func (m Model) Serves(provider string) bool {
	for _, r := range m.Routes {
		if r.Provider == provider {
			return true
		}
	}
	return false
}

// WithProviders returns a copy of m whose routes are those of the given
// providers, in m's order of preference. The routes of m are not changed.
func (m Model) WithProviders(providers ...string) Model {
	routes := make([]Route, 0, len(m.Routes))
	for _, r := range m.Routes {
		if slices.Contains(providers, r.Provider) {
			routes = append(routes, r)
		}
	}
	m.Routes = routes
	return m
}

// LoadFile reads a YAML model table: a top-level `models:` list of Model.
func LoadFile(path string) (*Catalog, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read model table: %w", err)
	}
	var doc struct {
		Models []Model `yaml:"models"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("model table %q: %w", path, err)
	}
	c, err := New(doc.Models)
	if err != nil {
		return nil, fmt.Errorf("model table %q: %w", path, err)
	}
	return c, nil
}

// Lookup finds a model by id or alias.
func (c *Catalog) Lookup(id string) (Model, bool) {
	m, ok := c.byID[id]
	if !ok {
		return Model{}, false
	}
	return *m, true
}

// Models returns every model, sorted by id.
func (c *Catalog) Models() []Model {
	out := make([]Model, len(c.models))
	copy(out, c.models)
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
