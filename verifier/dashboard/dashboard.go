// Package dashboard is the verifier's operator dashboard: static HTML, CSS
// and vanilla JavaScript, embedded in the binary and served on the
// operator API's address. The pages call the token-protected operator API
// under /v1 (workers, accounts, ledger, payouts, groups) with the operator
// token the user enters or opens from the one-time link (#token=...).
//
// It shares its stylesheet and helpers (app.css, ui.js) with the node's
// dashboard. It does not import package verifier, so the verifier can
// mount it: paths outside /v1 go to Handler, without the token check.
package dashboard

import (
	"embed"
	"errors"
	"io/fs"
	"net/http"

	nodedash "github.com/aspen-market/aspen/node/dashboard"
)

//go:embed web
var files embed.FS

// shared are the files taken from the node's dashboard.
var shared = map[string]bool{"app.css": true, "ui.js": true}

// overlay serves the operator pages and the shared files.
type overlay struct{ own, common fs.FS }

func (o overlay) Open(name string) (fs.File, error) {
	if shared[name] {
		return o.common.Open(name)
	}
	f, err := o.own.Open(name)
	if err != nil && errors.Is(err, fs.ErrNotExist) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return f, err
}

// Web is the operator dashboard's files: index.html, operator.js and the
// shared app.css and ui.js.
var Web fs.FS = overlay{own: mustSub(files, "web"), common: nodedash.Web}

func mustSub(f fs.FS, dir string) fs.FS {
	s, err := fs.Sub(f, dir)
	if err != nil {
		panic(err)
	}
	return s
}

// Handler serves the operator dashboard's static files: index.html at "/"
// and its assets, with the same security headers as the node's dashboard.
func Handler() http.Handler { return nodedash.Static(Web) }
