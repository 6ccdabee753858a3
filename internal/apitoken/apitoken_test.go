package apitoken

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

func TestLoadOrCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "api.token")
	tok, err := LoadOrCreate(path)
	if err != nil || len(tok) != 48 {
		t.Fatalf("create: %q %v", tok, err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v %v", st.Mode(), err)
	}
	again, err := LoadOrCreate(path)
	if err != nil || again != tok {
		t.Fatalf("reload: %q %v", again, err)
	}
	short := filepath.Join(t.TempDir(), "short")
	_ = os.WriteFile(short, []byte("abc\n"), 0o600)
	if _, err := LoadOrCreate(short); !errors.Is(err, ErrShort) {
		t.Fatalf("short token accepted: %v", err)
	}
}

func TestRequire(t *testing.T) {
	h := Require("secret-token-0123456789", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusUnauthorized) },
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	for auth, want := range map[string]int{"": 401, "Bearer wrong": 401, "secret-token-0123456789": 401, "Bearer secret-token-0123456789": 204} {
		r := httptest.NewRequest("GET", "/v1/x", nil)
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("Authorization %q: %d, want %d", auth, w.Code, want)
		}
	}
}
