// Package console serves the admin console: a browser page, embedded in
// the binary, that drives the /admin API. The page holds the admin key in
// sessionStorage and sends it in the Authorization header of every data
// call, so the console needs no cookie and cross-site requests carry no
// credential. The static files themselves need no key.
package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed assets
var assets embed.FS

// Prefix is the path the console is served under.
const Prefix = "/console/"

// contentSecurityPolicy allows only the console's own files: no inline
// script or style, no framing, and data calls to this origin only.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; " +
	"img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; " +
	"frame-ancestors 'none'"

// file is one embedded asset with its precomputed validator.
type file struct {
	name string
	body []byte
	etag string
	typ  string
}

// Handler returns the handler of Prefix. It serves GET and HEAD only,
// serves index.html for Prefix itself, and sets the security headers on
// every response, errors included.
func Handler() http.Handler {
	files := map[string]file{}
	err := fs.WalkDir(assets, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := assets.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		name := strings.TrimPrefix(p, "assets/")
		files[name] = file{name: name, body: body, etag: `"` + hex.EncodeToString(sum[:8]) + `"`,
			typ: mime.TypeByExtension(path.Ext(name))}
		return nil
	})
	if err != nil {
		// The assets are compiled in, so a failed read is a build defect.
		panic("console: read embedded assets: " + err.Error())
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setSecurityHeaders(w.Header())
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		name := strings.TrimPrefix(r.URL.Path, Prefix)
		if name == "" {
			name = "index.html"
		}
		f, ok := files[name]
		if !ok {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		h := w.Header()
		h.Set("Content-Type", f.typ)
		h.Set("ETag", f.etag)
		// Revalidate every time, so an upgraded gateway never runs old
		// script against its new API. The ETag keeps that cheap.
		h.Set("Cache-Control", "no-cache")
		http.ServeContent(w, r, f.name, time.Time{}, bytes.NewReader(f.body))
	})
}

func setSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), clipboard-write=(self)")
}
