package store

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	good := DefaultConfig()
	good.Dir = t.TempDir()
	if err := good.Validate(); err != nil {
		t.Fatalf("default config with Dir: %v", err)
	}
	cases := map[string]func(*Config){
		"no dir":            func(c *Config) { c.Dir = "" },
		"tiny chunks":       func(c *Config) { c.ChunkSize = 100 },
		"inline > chunk":    func(c *Config) { c.InlineMax = c.ChunkSize + 1 },
		"no batch":          func(c *Config) { c.MaxBatch = 0 },
		"one compactor":     func(c *Config) { c.NumCompactors = 1 },
		"vlog too small":    func(c *Config) { c.ValueLogFileSize = 1000 },
		"chunk > vlog file": func(c *Config) { c.ChunkSize = 64 << 20; c.ValueLogFileSize = 32 << 20 },
		"threshold":         func(c *Config) { c.ValueThreshold = 4 << 20 },
		"memtable":          func(c *Config) { c.MemTableSize = 1000 },
		"negative gc":       func(c *Config) { c.ValueLogGCInterval = -1 },
	}
	for name, mutate := range cases {
		c := good
		mutate(&c)
		if err := c.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Validate = %v, want ErrInvalid", name, err)
		}
		if _, err := Open(c); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Open = %v, want ErrInvalid", name, err)
		}
	}
}

func TestRecordsPutGetDelete(t *testing.T) {
	s := openTest(t, "", nil)
	key := []byte("a\n")
	_, err := s.Get("jobs", key)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get missing = %v, want ErrNotFound", err)
	}
	key[0] = 'X' // the error keeps its own copy of the key
	if got, want := err.Error(), `store: not found: jobs/"a\n"`; got != want {
		t.Errorf("Get missing: message %q, want %q", got, want)
	}
	val := []byte("hello")
	if err := s.Put("jobs", []byte("a"), val); err != nil {
		t.Fatal(err)
	}
	val[0] = 'X' // the store must have copied it
	got, err := s.Get("jobs", []byte("a"))
	if err != nil || string(got) != "hello" {
		t.Fatalf("Get = %q, %v", got, err)
	}
	// Namespaces are disjoint even when names and keys share prefixes.
	if err := s.Put("job", []byte("sa"), []byte("other")); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get("jobs", []byte("a")); string(got) != "hello" {
		t.Fatalf("namespace bleed: %q", got)
	}
	if _, err := s.Get("job", []byte("a")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("namespace bleed: %v", err)
	}
	// Empty values and binary keys are fine.
	if err := s.Put("jobs", []byte{0, 0xff}, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get("jobs", []byte{0, 0xff}); err != nil || len(got) != 0 {
		t.Fatalf("empty value: %q %v", got, err)
	}
	if err := s.Delete("jobs", []byte("a")); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("jobs", []byte("a")); err != nil {
		t.Fatalf("deleting a missing key: %v", err)
	}
	if _, err := s.Get("jobs", []byte("a")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after Delete: %v", err)
	}
	for _, ns := range []string{"", "a\x00b", strings.Repeat("n", maxNamespaceLen+1)} {
		if err := s.Put(ns, []byte("k"), nil); !errors.Is(err, ErrInvalid) {
			t.Errorf("Put(ns %q) = %v, want ErrInvalid", ns, err)
		}
	}
	if err := s.Put("jobs", make([]byte, maxKeyLen+1), nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("long key: %v", err)
	}
}

func TestRecordTooLarge(t *testing.T) {
	s := openTest(t, "", func(c *Config) { c.MaxRecordSize = 100 })
	if err := s.Put("n", []byte("k"), make([]byte, 101)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Put = %v, want ErrTooLarge", err)
	}
	if err := s.Put("n", []byte("k"), make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
}

func TestScan(t *testing.T) {
	s := openTest(t, "", nil)
	keys := []string{"a", "b/1", "b/2", "b/3", "b\xff", "c"}
	for _, k := range keys {
		if err := s.Put("ns", []byte(k), []byte("v"+k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Put("ns2", []byte("b/9"), nil); err != nil {
		t.Fatal(err)
	}
	collect := func(opt ScanOptions, limit int) []string {
		t.Helper()
		var out []string
		err := s.View(func(tx *Tx) error {
			return tx.ScanWith("ns", opt, func(k, v []byte) error {
				if string(v) != "v"+string(k) {
					t.Errorf("key %q has value %q", k, v)
				}
				out = append(out, string(k))
				if len(out) == limit {
					return ErrStop
				}
				return nil
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	check := func(name string, got []string, want ...string) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: got %q, want %q", name, got, want)
		}
	}
	check("all", collect(ScanOptions{}, 0), keys...)
	check("prefix", collect(ScanOptions{Prefix: []byte("b/")}, 0), "b/1", "b/2", "b/3")
	check("limit", collect(ScanOptions{Prefix: []byte("b")}, 2), "b/1", "b/2")
	check("start", collect(ScanOptions{Prefix: []byte("b/"), Start: []byte("b/2")}, 0), "b/2", "b/3")
	check("start before prefix", collect(ScanOptions{Prefix: []byte("b/"), Start: []byte("a")}, 0), "b/1", "b/2", "b/3")
	check("reverse", collect(ScanOptions{Prefix: []byte("b/"), Reverse: true}, 0), "b/3", "b/2", "b/1")
	check("reverse all", collect(ScanOptions{Reverse: true}, 0), "c", "b\xff", "b/3", "b/2", "b/1", "a")
	check("reverse 0xff prefix", collect(ScanOptions{Prefix: []byte("b"), Reverse: true}, 0), "b\xff", "b/3", "b/2", "b/1")
	check("reverse start", collect(ScanOptions{Prefix: []byte("b/"), Start: []byte("b/2"), Reverse: true}, 0), "b/2", "b/1")
	check("reverse start after prefix", collect(ScanOptions{Prefix: []byte("b/"), Start: []byte("z"), Reverse: true}, 0), "b/3", "b/2", "b/1")

	var n int
	if err := s.Scan("ns", []byte("b/"), func(k, v []byte) error { n++; return nil }); err != nil || n != 3 {
		t.Fatalf("Store.Scan: n=%d err=%v", n, err)
	}
	boom := errors.New("boom")
	if err := s.Scan("ns", nil, func(k, v []byte) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("callback error not returned: %v", err)
	}
}

func TestUpdateIsAtomic(t *testing.T) {
	s := openTest(t, "", nil)
	boom := errors.New("boom")
	err := s.Update(func(tx *Tx) error {
		if err := tx.Put("n", []byte("a"), []byte("1")); err != nil {
			return err
		}
		// A transaction sees its own writes, in Get and Scan.
		if v, err := tx.Get("n", []byte("a")); err != nil || string(v) != "1" {
			t.Errorf("own write: %q %v", v, err)
		}
		seen := 0
		_ = tx.Scan("n", nil, func(k, v []byte) error { seen++; return nil })
		if seen != 1 {
			t.Errorf("scan saw %d own writes, want 1", seen)
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v", err)
	}
	if _, err := s.Get("n", []byte("a")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("failed Update left a write: %v", err)
	}
	if err := s.View(func(tx *Tx) error { return tx.Put("n", []byte("a"), nil) }); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Put in View = %v, want ErrInvalid", err)
	}
}

func TestReopenAndClosed(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.Dir = dir
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put("n", []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	c, err := s.PutBlob([]byte("blob"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	mustErrIs(t, s.Put("n", []byte("k"), nil), ErrClosed)
	_, err = s.Get("n", []byte("k"))
	mustErrIs(t, err, ErrClosed)
	mustErrIs(t, s.Durable(t.Context(), func(*Tx) error { return nil }), ErrClosed)
	_, err = s.GetBlob(c)
	mustErrIs(t, err, ErrClosed)

	s2 := openTest(t, dir, nil)
	if v, err := s2.Get("n", []byte("k")); err != nil || !bytes.Equal(v, []byte("v")) {
		t.Fatalf("after reopen: %q %v", v, err)
	}
	if b, err := s2.GetBlob(c); err != nil || string(b) != "blob" {
		t.Fatalf("blob after reopen: %q %v", b, err)
	}
}

func TestScanCallbackUsingStoreDuringClose(t *testing.T) {
	// A callback calling back into the store must not deadlock with Close.
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.Dir = dir
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put("n", []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error)
	err = s.Scan("n", nil, func(k, v []byte) error {
		go func() { closed <- s.Close() }()
		// Close is now waiting for this scan; a nested call fails instead
		// of blocking, or succeeds if it ran before Close marked the store.
		_, err := s.Get("n", k)
		if err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("nested Get: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}
