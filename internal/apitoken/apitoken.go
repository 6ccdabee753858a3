// Package apitoken owns the bearer tokens that guard the node's local API
// and the verifier's operator API: creating and loading the token file, and
// checking requests against it in constant time.
package apitoken

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// ErrShort: a token file holds fewer than MinLen characters.
var ErrShort = errors.New("apitoken: token file too short")

// MinLen is the shortest token accepted from a file.
const MinLen = 16

// LoadOrCreate reads the token in path, or creates a random 192-bit one
// there (mode 0600, directories 0700) when the file does not exist.
func LoadOrCreate(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		tok := strings.TrimSpace(string(b))
		if len(tok) < MinLen {
			return "", fmt.Errorf("%w: %s", ErrShort, path)
		}
		return tok, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("apitoken: %w", err)
	}
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("apitoken: %w", err)
	}
	tok := hex.EncodeToString(b[:])
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("apitoken: %w", err)
	}
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("apitoken: %w", err)
	}
	return tok, nil
}

// Require passes requests carrying "Authorization: Bearer TOKEN" to next
// and answers every other request with refuse (which must write a 401).
func Require(token string, refuse http.HandlerFunc, next http.Handler) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			refuse(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}
