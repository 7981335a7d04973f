package console_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/grokproxy/grokproxy/internal/console"
)

func serve(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(console.Prefix, console.Handler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(body)
}

func TestConsoleServesAssets(t *testing.T) {
	srv := serve(t)
	cases := []struct {
		path     string
		typ      string
		contains string
	}{
		{"/console/", "text/html", `<script src="console.js" defer></script>`},
		{"/console/index.html", "text/html", "Admin API key"},
		{"/console/console.js", "text/javascript", "sessionStorage"},
		{"/console/console.css", "text/css", "prefers-color-scheme: dark"},
		{"/console/icon.svg", "image/svg+xml", "<svg"},
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+tc.path, nil)
			res, body := get(t, req)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status %d; want 200", res.StatusCode)
			}
			if got := res.Header.Get("Content-Type"); !strings.HasPrefix(got, tc.typ) {
				t.Errorf("Content-Type %q; want %s", got, tc.typ)
			}
			if !strings.Contains(body, tc.contains) {
				t.Errorf("body lacks %q", tc.contains)
			}
		})
	}
}

func TestConsoleSecurityHeaders(t *testing.T) {
	srv := serve(t)
	for _, path := range []string{"/console/", "/console/console.js", "/console/missing.js"} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		res, _ := get(t, req)
		csp := res.Header.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: Content-Security-Policy %q lacks %q", path, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
			t.Errorf("%s: Content-Security-Policy %q allows inline code", path, csp)
		}
		if got := res.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s: X-Content-Type-Options %q", path, got)
		}
		if got := res.Header.Get("Referrer-Policy"); got != "no-referrer" {
			t.Errorf("%s: Referrer-Policy %q", path, got)
		}
		if res.Header.Get("Set-Cookie") != "" {
			t.Errorf("%s: sets a cookie", path)
		}
	}
}

func TestConsoleHasNoInlineCode(t *testing.T) {
	srv := serve(t)
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/console/", nil)
	_, body := get(t, req)
	for _, bad := range []string{"<script>", "<style", " style=", " onclick=", " onload=", "javascript:"} {
		if strings.Contains(body, bad) {
			t.Errorf("index.html contains %q, which the policy blocks", bad)
		}
	}
}

func TestConsoleStatusCodes(t *testing.T) {
	srv := serve(t)
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/console/nope.js", nil)
	if res, _ := get(t, req); res.StatusCode != http.StatusNotFound {
		t.Errorf("missing file: status %d; want 404", res.StatusCode)
	}
	req, _ = http.NewRequest(http.MethodPost, srv.URL+"/console/", strings.NewReader("x"))
	res, _ := get(t, req)
	if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: status %d, Allow %q; want 405, \"GET, HEAD\"", res.StatusCode, res.Header.Get("Allow"))
	}

	req, _ = http.NewRequest(http.MethodGet, srv.URL+"/console/console.js", nil)
	res, _ = get(t, req)
	etag := res.Header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	req, _ = http.NewRequest(http.MethodGet, srv.URL+"/console/console.js", nil)
	req.Header.Set("If-None-Match", etag)
	if res, _ := get(t, req); res.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: status %d; want 304", res.StatusCode)
	}
}
