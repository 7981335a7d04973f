package catalog_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/grokproxy/grokproxy/internal/catalog"
)

func TestBuiltinHasGrok3(t *testing.T) {
	c := catalog.Builtin()
	m, ok := c.Lookup("grok-3")
	if !ok {
		t.Fatal("grok-3 is missing from the built-in table")
	}
	if m.Kind != catalog.KindChat || m.Routes[0].Provider != "grok" {
		t.Fatalf("grok-3 = %+v; want a chat model served first by grok", m)
	}
	img, ok := c.Lookup("grok-imagine")
	if !ok || img.Kind != catalog.KindImage {
		t.Fatalf("grok-imagine = %+v, %v; want an image model", img, ok)
	}
	if alias, ok := c.Lookup("grok-4-reasoning"); !ok || alias.ID != "grok-4-expert" {
		t.Fatalf("alias grok-4-reasoning = %q, %v; want grok-4-expert", alias.ID, ok)
	}
	if _, ok := c.Lookup("gpt-4o"); ok {
		t.Fatal("Lookup(gpt-4o) found a model")
	}
}

func TestNewRejectsBadTables(t *testing.T) {
	cases := map[string][]catalog.Model{
		"duplicate": {{ID: "a", Routes: []catalog.Route{{"grok", "fast"}}}, {ID: "a", Routes: []catalog.Route{{"grok", "fast"}}}},
		"alias-dup": {{ID: "a", Routes: []catalog.Route{{"grok", "fast"}}}, {ID: "b", Aliases: []string{"a"}, Routes: []catalog.Route{{"grok", "fast"}}}},
		"no-routes": {{ID: "a"}},
		"provider":  {{ID: "a", Routes: []catalog.Route{{"openai", "gpt"}}}},
		"kind":      {{ID: "a", Kind: "audio", Routes: []catalog.Route{{"grok", "fast"}}}},
	}
	for name, models := range cases {
		if _, err := catalog.New(models); err == nil {
			t.Errorf("%s: New succeeded; want an error", name)
		}
	}
}

func TestLoadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "models.yaml")
	text := "models:\n  - id: my-model\n    aliases: [mine]\n    routes:\n      - {provider: xai, upstream: grok-4}\n      - {provider: grok, upstream: expert}\n"
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := catalog.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := c.Lookup("mine")
	if !ok || m.ID != "my-model" || len(m.Routes) != 2 || m.Routes[1].Upstream != "expert" {
		t.Fatalf("Lookup(mine) = %+v, %v", m, ok)
	}
	if len(c.Models()) != 1 {
		t.Fatalf("Models() = %d; want 1", len(c.Models()))
	}
}

func TestWithProviders(t *testing.T) {
	c := catalog.Builtin()
	m, _ := c.Lookup("grok-3")
	if !m.Serves("grok") || !m.Serves("xai") {
		t.Fatalf("grok-3 routes %+v; want both providers", m.Routes)
	}
	only := m.WithProviders("xai")
	if len(only.Routes) != 1 || only.Routes[0] != (catalog.Route{Provider: "xai", Upstream: "grok-3"}) {
		t.Errorf("WithProviders(xai) routes = %+v; want the xai route alone", only.Routes)
	}
	if only.Serves("grok") {
		t.Error("the filtered model still serves grok")
	}
	again, _ := c.Lookup("grok-3")
	if len(again.Routes) != 2 || again.Routes[0].Provider != "grok" {
		t.Errorf("the catalog changed under WithProviders: %+v", again.Routes)
	}
	heavy, _ := c.Lookup("grok-4-heavy")
	if got := heavy.WithProviders("xai"); len(got.Routes) != 0 {
		t.Errorf("grok-4-heavy via xai = %+v; want no route", got.Routes)
	}
}

func TestBuiltinRoutesBothProviders(t *testing.T) {
	// Each chat model but the Grok-web-only heavy mode can fall back to the
	// other provider.
	for _, m := range catalog.Builtin().Models() {
		if m.ID == "grok-4-heavy" {
			continue
		}
		if !m.Serves("grok") || !m.Serves("xai") {
			t.Errorf("%s routes %+v; want a grok and an xai route", m.ID, m.Routes)
		}
	}
}
