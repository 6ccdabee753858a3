// Package dashboard is the node's web dashboard: static HTML, CSS and
// vanilla JavaScript, embedded in the binary and served on the node's local
// API address. The pages themselves hold no data: they call the node's
// token-protected API under /v1 with the token the user enters (or opens
// from the one-time link #token=... the node prints at start), kept in the
// tab's sessionStorage only.
//
// Handler serves the files at "/"; it is mounted outside the API's token
// check because it serves nothing but these public files.
package dashboard

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

//go:embed web
var files embed.FS

// Web is the dashboard's files (index.html, app.css, ui.js, node.js). The
// shared ones, app.css and ui.js, are also used by the verifier's operator
// dashboard.
var Web fs.FS = mustSub(files, "web")

func mustSub(f fs.FS, dir string) fs.FS {
	s, err := fs.Sub(f, dir)
	if err != nil {
		panic(err)
	}
	return s
}

// Handler serves the node dashboard's static files: index.html at "/" and
// its assets. Only GET and HEAD are answered; unknown paths are 404.
func Handler() http.Handler { return Static(Web) }

// Static serves the files of fsys with the dashboard's security headers
// (a strict Content-Security-Policy: no inline script, nothing from other
// origins; no framing; no referrer, so a #token fragment never leaks).
// "/" serves index.html. It is exported for the verifier's dashboard.
func Static(fsys fs.FS) http.Handler {
	fileServer := http.FileServerFS(fsys)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		p := path.Clean("/" + r.URL.Path)
		name := strings.TrimPrefix(p, "/")
		if name == "" || name == "index.html" {
			name = "index.html"
		} else if st, err := fs.Stat(fsys, name); err != nil || st.IsDir() {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		if name == "index.html" {
			b, err := fs.ReadFile(fsys, name)
			if err != nil {
				http.NotFound(w, r)
				return
			}
			h.Set("Content-Type", "text/html; charset=utf-8")
			if r.Method == http.MethodHead {
				return
			}
			_, _ = w.Write(b)
			return
		}
		r2 := r.Clone(r.Context())
		r2.URL.Path = p
		fileServer.ServeHTTP(w, r2)
	})
}
