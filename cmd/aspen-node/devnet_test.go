package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDevnet runs the README's first command end to end: a verifier, three
// workers and a consumer in this process on loopback, an example map job,
// verified results and a balanced ledger.
func TestDevnet(t *testing.T) {
	if testing.Short() {
		t.Skip("devnet end to end")
	}
	if raceEnabled {
		t.Skip("runs without -race in make check's e2e pass (wazero compiles 10x slower under the race detector)")
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	code := cmdDevnet(ctx, []string{"--dir", dir, "--tasks", "4", "--example", "primes"}, nil, &out, &errb)
	if code != 0 {
		t.Fatalf("devnet exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
	}
	got := out.String()
	for _, want := range []string{
		"3 workers benchmarked and rated",
		"all 4 results verified",
		"664579", // primes below 10,000,000
		"ledger balanced",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("devnet output lacks %q:\n%s", want, got)
		}
	}
	if strings.Count(got, "verified 2/2") != 4 {
		t.Errorf("want 4 tasks verified by 2 agreeing replicas:\n%s", got)
	}
	env, err := os.ReadFile(filepath.Join(dir, "devnet.env"))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ASPEN_API=", "ASPEN_TOKEN=", "ASPEN_VERIFIER_API=", "ASPEN_VERIFIER_TOKEN="} {
		if !strings.Contains(string(env), k) {
			t.Errorf("devnet.env lacks %s", k)
		}
	}
}
