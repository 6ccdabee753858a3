package dashboard

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, path string) *http.Response {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec.Result()
}

func TestServesIndexAndAssets(t *testing.T) {
	h := Handler()
	for _, tc := range []struct{ path, ctype, want string }{
		{"/", "text/html", `<section id="login"`},
		{"/index.html", "text/html", `<script src="node.js"`},
		{"/app.css", "text/css", "--accent"},
		{"/ui.js", "javascript", "const Aspen"},
		{"/node.js", "javascript", "/v1/groups"},
	} {
		resp := get(t, h, "GET", tc.path)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d", tc.path, resp.StatusCode)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.Contains(ct, tc.ctype) {
			t.Errorf("GET %s: Content-Type %q, want %q", tc.path, ct, tc.ctype)
		}
		if !strings.Contains(string(body), tc.want) {
			t.Errorf("GET %s: body lacks %q", tc.path, tc.want)
		}
		csp := resp.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("GET %s: CSP %q", tc.path, csp)
		}
		if resp.Header.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("GET %s: no Referrer-Policy", tc.path)
		}
	}
}

func TestRefusesOtherPathsAndMethods(t *testing.T) {
	h := Handler()
	for _, p := range []string{"/nope", "/web/index.html", "/../dashboard.go", "/v2/x"} {
		if resp := get(t, h, "GET", p); resp.StatusCode != 404 {
			t.Errorf("GET %s: %d, want 404", p, resp.StatusCode)
		}
	}
	if resp := get(t, h, "POST", "/"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %d", resp.StatusCode)
	}
	if resp := get(t, h, "HEAD", "/"); resp.StatusCode != 200 {
		t.Errorf("HEAD /: %d", resp.StatusCode)
	}
}

// TestNoExternalResources checks the pages load nothing from other origins
// and use no inline script or style (the CSP forbids both).
func TestNoExternalResources(t *testing.T) {
	ext := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?(https?:)?//`)
	inline := regexp.MustCompile(`(?i)<script(\s[^>]*)?>\s*[^<\s]|<style|\sstyle\s*=|\son[a-z]+\s*=`)
	err := fs.WalkDir(Web, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(Web, p)
		if err != nil {
			return err
		}
		if ext.Match(b) {
			t.Errorf("%s references another origin", p)
		}
		if strings.HasSuffix(p, ".html") && inline.Match(b) {
			t.Errorf("%s has inline script, style or handler: %q", p, inline.Find(b))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
