package store

import (
	"errors"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// crashChildEnv selects the child role of the kill -9 test (crash_test.go):
// the test binary re-executes itself with this variable set.
const crashChildEnv = "ASPEN_STORE_CRASH_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		os.Exit(crashChild(dir))
	}
	goleak.VerifyTestMain(m)
}

// openTest opens a store in a fresh temporary directory (or dir, if given)
// and closes it when the test ends.
func openTest(t testing.TB, dir string, mutate func(*Config)) *Store {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	cfg := DefaultConfig()
	cfg.Dir = dir
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func mustErrIs(t testing.TB, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v, want one wrapping %v", err, target)
	}
}
