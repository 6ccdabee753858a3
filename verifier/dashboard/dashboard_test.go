package dashboard

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestServesOperatorPagesAndSharedAssets(t *testing.T) {
	h := Handler()
	for _, tc := range []struct{ path, want string }{
		{"/", `<script src="operator.js"`},
		{"/operator.js", "/v1/workers"},
		{"/app.css", "--accent"},
		{"/ui.js", "const Aspen"},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", tc.path, nil))
		body, _ := io.ReadAll(rec.Result().Body)
		if rec.Code != 200 || !strings.Contains(string(body), tc.want) {
			t.Errorf("GET %s: %d, body has %q: %v", tc.path, rec.Code, tc.want, strings.Contains(string(body), tc.want))
		}
		if !strings.Contains(rec.Header().Get("Content-Security-Policy"), "script-src 'self'") {
			t.Errorf("GET %s: no CSP", tc.path)
		}
	}
	for _, p := range []string{"/node.js", "/nope", "/v1/info"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", p, nil))
		if rec.Code != 404 {
			t.Errorf("GET %s: %d, want 404", p, rec.Code)
		}
	}
}
