package admin_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/grokproxy/grokproxy/internal/admin"
	"github.com/grokproxy/grokproxy/internal/app"
	"github.com/grokproxy/grokproxy/internal/keyring"
	"github.com/grokproxy/grokproxy/internal/store"
	"github.com/grokproxy/grokproxy/internal/store/sqlite"
)

// generationPage is the response body of GET /admin/generations.
type generationPage struct {
	Object string `json:"object"`
	Data   []struct {
		ID           string  `json:"id"`
		UserID       string  `json:"user_id"`
		Status       int     `json:"status"`
		Model        string  `json:"model"`
		ErrorType    string  `json:"error_type"`
		FirstTokenMS *int64  `json:"first_token_ms"`
		Prompt       *string `json:"prompt"`
		Response     *string `json:"response"`
		Truncated    bool    `json:"content_truncated"`
	} `json:"data"`
	NextCursor   *string `json:"next_cursor"`
	ContentShown bool    `json:"content_shown"`
}

func newAdminServer(t *testing.T, h *admin.Handler) *httptest.Server {
	t.Helper()
	if h.Log == nil {
		h.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if h.Now == nil {
		h.Now = time.Now
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func getJSON(t *testing.T, srv *httptest.Server, path string, v any) int {
	t.Helper()
	res, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", path, err)
	}
	if v != nil && res.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: decode %s: %v", path, body, err)
		}
	}
	return res.StatusCode
}

func insertGenerations(t *testing.T, st store.Store, gs []store.Generation) {
	t.Helper()
	if err := st.InsertGenerations(context.Background(), gs); err != nil {
		t.Fatalf("insert generations: %v", err)
	}
}

func TestGenerationsPagesThroughTies(t *testing.T) {
	st := sqlite.OpenTest(t)
	base := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	var gs []store.Generation
	var want []string
	// 25 milliseconds with 10 records each: SQLite keeps milliseconds, so
	// every page boundary falls inside a group of equal times.
	for ms := 24; ms >= 0; ms-- {
		for i := 9; i >= 0; i-- {
			id := fmt.Sprintf("gen_%03d_%d", ms, i)
			want = append(want, id)
			gs = append(gs, store.Generation{ID: id, UserID: "usr_a", Model: "grok-3", Status: 200,
				CreatedAt: base.Add(time.Duration(ms) * time.Millisecond)})
		}
	}
	insertGenerations(t, st, gs)
	srv := newAdminServer(t, &admin.Handler{Generations: st})

	var got []string
	path := "/admin/generations?limit=7"
	for pages := 0; pages < 100; pages++ {
		var page generationPage
		if code := getJSON(t, srv, path, &page); code != http.StatusOK {
			t.Fatalf("GET %s: status %d", path, code)
		}
		for _, d := range page.Data {
			got = append(got, d.ID)
		}
		if page.NextCursor == nil {
			break
		}
		path = "/admin/generations?limit=7&cursor=" + url.QueryEscape(*page.NextCursor)
	}
	if len(got) != len(want) {
		t.Fatalf("listed %d records; want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("record %d is %s; want %s", i, got[i], want[i])
		}
	}
}

func TestGenerationsFilters(t *testing.T) {
	st := sqlite.OpenTest(t)
	now := time.Now().UTC()
	insertGenerations(t, st, []store.Generation{
		{ID: "gen_1", UserID: "usr_a", Status: 200, CreatedAt: now.Add(-4 * time.Second)},
		{ID: "gen_2", UserID: "usr_b", Status: 429, ErrorType: "rate_limit_error", CreatedAt: now.Add(-3 * time.Second)},
		{ID: "gen_3", UserID: "usr_a", Status: 502, ErrorType: "unavailable", CreatedAt: now.Add(-2 * time.Second)},
		{ID: "gen_4", UserID: "usr_b", Status: 200, FirstTokenMS: 120, CreatedAt: now.Add(-1 * time.Second)},
	})
	srv := newAdminServer(t, &admin.Handler{Generations: st})

	cases := []struct {
		name  string
		query string
		want  []string
	}{
		{"all", "", []string{"gen_4", "gen_3", "gen_2", "gen_1"}},
		{"errors", "?status=error", []string{"gen_3", "gen_2"}},
		{"successes", "?status=ok", []string{"gen_4", "gen_1"}},
		{"one status", "?status=429", []string{"gen_2"}},
		{"one user", "?user=usr_a", []string{"gen_3", "gen_1"}},
		{"user and status", "?user=usr_b&status=ok", []string{"gen_4"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var page generationPage
			if code := getJSON(t, srv, "/admin/generations"+tc.query, &page); code != http.StatusOK {
				t.Fatalf("status %d", code)
			}
			var got []string
			for _, d := range page.Data {
				got = append(got, d.ID)
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("got %v; want %v", got, tc.want)
			}
			if page.NextCursor != nil {
				t.Errorf("next_cursor = %q; want null on the last page", *page.NextCursor)
			}
		})
	}
}

func TestGenerationsRejectsBadQuery(t *testing.T) {
	st := sqlite.OpenTest(t)
	srv := newAdminServer(t, &admin.Handler{Generations: st})
	for _, q := range []string{"limit=0", "limit=201", "limit=x", "status=teapot", "status=99", "cursor=nope"} {
		if code := getJSON(t, srv, "/admin/generations?"+q, nil); code != http.StatusBadRequest {
			t.Errorf("?%s: status %d; want 400", q, code)
		}
	}
}

func TestGenerationsFirstTokenNullWhenNone(t *testing.T) {
	st := sqlite.OpenTest(t)
	now := time.Now().UTC()
	insertGenerations(t, st, []store.Generation{
		{ID: "gen_none", Status: 502, CreatedAt: now.Add(-time.Second)},
		{ID: "gen_some", Status: 200, FirstTokenMS: 85, CreatedAt: now},
	})
	srv := newAdminServer(t, &admin.Handler{Generations: st})
	var page generationPage
	getJSON(t, srv, "/admin/generations", &page)
	if len(page.Data) != 2 {
		t.Fatalf("listed %d records; want 2", len(page.Data))
	}
	if ft := page.Data[0].FirstTokenMS; ft == nil || *ft != 85 {
		t.Errorf("first_token_ms of gen_some = %v; want 85", ft)
	}
	if ft := page.Data[1].FirstTokenMS; ft != nil {
		t.Errorf("first_token_ms of gen_none = %d; want null", *ft)
	}
}

func TestGenerationsContent(t *testing.T) {
	ring, err := keyring.Parse(keyring.Generate())
	if err != nil {
		t.Fatal(err)
	}
	st := sqlite.OpenTest(t)
	now := time.Now().UTC()
	sealed := store.Generation{ID: "gen_sealed", Status: 200, CreatedAt: now, ContentCrypted: true}
	for _, col := range []struct {
		name string
		v    *string
		text string
	}{{"prompt", &sealed.Prompt, "sealed question"}, {"response", &sealed.Response, "sealed answer"}} {
		ct, err := ring.Encrypt([]byte(col.text), keyring.Binding{Table: "generations", Column: col.name, RowID: sealed.ID})
		if err != nil {
			t.Fatal(err)
		}
		*col.v = hex.EncodeToString(ct)
	}
	long := strings.Repeat("é", 3000) // 6000 bytes
	insertGenerations(t, st, []store.Generation{
		{ID: "gen_plain", Status: 200, Prompt: "plain question", Response: "plain answer", CreatedAt: now.Add(-2 * time.Second)},
		{ID: "gen_long", Status: 200, Prompt: long, CreatedAt: now.Add(-time.Second)},
		sealed,
	})
	open := func(g store.Generation) (store.Generation, error) {
		for _, col := range []struct {
			name string
			v    *string
		}{{"prompt", &g.Prompt}, {"response", &g.Response}} {
			text, err := app.OpenContent(ring, g, col.name, *col.v)
			if err != nil {
				return g, err
			}
			*col.v = text
		}
		return g, nil
	}

	t.Run("hidden", func(t *testing.T) {
		srv := newAdminServer(t, &admin.Handler{Generations: st})
		var page generationPage
		getJSON(t, srv, "/admin/generations", &page)
		if page.ContentShown {
			t.Error("content_shown = true; want false")
		}
		for _, d := range page.Data {
			if d.Prompt != nil || d.Response != nil {
				t.Errorf("%s shows content with Show unset", d.ID)
			}
		}
	})
	t.Run("shown and decrypted", func(t *testing.T) {
		srv := newAdminServer(t, &admin.Handler{Generations: st, Content: admin.ContentAccess{Show: true, Open: open}})
		var page generationPage
		getJSON(t, srv, "/admin/generations", &page)
		if !page.ContentShown || len(page.Data) != 3 {
			t.Fatalf("content_shown = %v, %d records; want true, 3", page.ContentShown, len(page.Data))
		}
		byID := map[string]int{}
		for i, d := range page.Data {
			byID[d.ID] = i
		}
		s := page.Data[byID["gen_sealed"]]
		if s.Prompt == nil || *s.Prompt != "sealed question" || s.Response == nil || *s.Response != "sealed answer" {
			t.Errorf("sealed record shows %v / %v; want the decrypted text", s.Prompt, s.Response)
		}
		p := page.Data[byID["gen_plain"]]
		if p.Prompt == nil || *p.Prompt != "plain question" {
			t.Errorf("plain record shows prompt %v", p.Prompt)
		}
		l := page.Data[byID["gen_long"]]
		if l.Prompt == nil || len(*l.Prompt) > 4000 || !l.Truncated || !strings.HasPrefix(long, *l.Prompt) {
			t.Errorf("long prompt: %d bytes, truncated=%v; want a whole-character prefix of at most 4000 bytes", len(*l.Prompt), l.Truncated)
		}
	})
	t.Run("encrypted without opener", func(t *testing.T) {
		srv := newAdminServer(t, &admin.Handler{Generations: st, Content: admin.ContentAccess{Show: true}})
		var page generationPage
		getJSON(t, srv, "/admin/generations", &page)
		for _, d := range page.Data {
			if d.ID == "gen_sealed" && d.Prompt != nil {
				t.Errorf("sealed record shows prompt %q without an opener", *d.Prompt)
			}
		}
	})
}

func TestGenerationsNotConfigured(t *testing.T) {
	srv := newAdminServer(t, &admin.Handler{})
	if code := getJSON(t, srv, "/admin/generations", nil); code != http.StatusNotImplemented {
		t.Errorf("status %d; want 501", code)
	}
	if code := getJSON(t, srv, "/admin/metrics/summary", nil); code != http.StatusNotImplemented {
		t.Errorf("summary status %d; want 501", code)
	}
}
