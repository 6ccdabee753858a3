package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aspen-market/aspen/examples"
	"github.com/aspen-market/aspen/sandbox"
)

func TestMain(m *testing.M) {
	sandbox.RunChildIfRequested() // the test binary is also the executor child
	os.Exit(m.Run())
}

// Hand-assembled modules: _start loops forever, or traps.
var (
	loopWasm = []byte("\x00asm\x01\x00\x00\x00" +
		"\x01\x04\x01\x60\x00\x00" + // type () -> ()
		"\x03\x02\x01\x00" + // one function of type 0
		"\x07\x0a\x01\x06_start\x00\x00" + // export it as _start
		"\x0a\x09\x01\x07\x00\x03\x40\x0c\x00\x0b\x0b") // loop br 0 end
	trapWasm = []byte("\x00asm\x01\x00\x00\x00" +
		"\x01\x04\x01\x60\x00\x00" +
		"\x03\x02\x01\x00" +
		"\x07\x0a\x01\x06_start\x00\x00" +
		"\x0a\x05\x01\x03\x00\x00\x0b") // unreachable
)

type execRun struct {
	code           int
	stdout, stderr string
}

func runExec(t *testing.T, stdin, cache string, args ...string) execRun {
	t.Helper()
	var out, errb bytes.Buffer
	args = append(args, "--cache-dir", cache)
	code := cmdExec(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return execRun{code, out.String(), errb.String()}
}

func execFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExec(t *testing.T) {
	primes, err := examples.Module("primes")
	if err != nil {
		t.Fatal(err)
	}
	primesFile := execFile(t, "primes.wasm", primes)
	inputFile := execFile(t, "in", []byte("1 1000"))
	cache := t.TempDir()

	cases := []struct {
		name   string
		stdin  string
		args   []string
		code   int
		stdout string
		stderr string // wanted suffix of stderr
	}{
		{"input file", "", []string{primesFile, "--input", inputFile}, 0, "168\n", ""},
		{"stdin, flags first", "1 100", []string{"--timeout", "1m", primesFile}, 0, "25\n", ""},
		{"bad input", "nonsense", []string{primesFile}, 1, "",
			"primes: want \"LO HI\" with 0 <= LO <= HI <= 2^50\naspen-node exec: job exited with status 2: primes: want \"LO HI\" with 0 <= LO <= HI <= 2^50\n"},
		{"timeout", "", []string{execFile(t, "loop.wasm", loopWasm), "--timeout", "300ms"}, 1, "",
			"aspen-node exec: time limit 300ms exceeded\n"},
		{"trap", "", []string{execFile(t, "trap.wasm", trapWasm)}, 1, "", "aspen-node exec: job trapped: unreachable\n"},
		{"memory", "1 1000", []string{primesFile, "--max-memory", "1MiB"}, 1, "", "exceeds the memory limit 1MiB\n"},
		{"invalid", "", []string{execFile(t, "junk.wasm", []byte("junk"))}, 1, "", "aspen-node exec: invalid module: invalid magic number\n"},
		{"no module", "", nil, 2, "", ""},
		{"two modules", "", []string{primesFile, primesFile}, 2, "", ""},
		{"bad size", "", []string{primesFile, "--max-memory", "lots"}, 2, "", ""},
		{"missing file", "", []string{filepath.Join(t.TempDir(), "absent.wasm")}, 1, "", "no such file or directory\n"},
		{"verbose", "1 10", []string{primesFile, "-v"}, 0, "4\n", "aspen-node exec: ok, exit status 0"},
		{"work", "1 10", []string{primesFile}, 0, "4\n", " standard s)\n"},
		{"work limit", "", []string{execFile(t, "loop.wasm", loopWasm), "--work-budget", "1000"}, 1, "",
			"aspen-node exec: work limit 1000 exceeded\naspen-node exec: work: 1000 units (0.000001 standard s)\n"},
		{"work only", "", []string{execFile(t, "loop.wasm", loopWasm), "--work-budget", "1000", "--work"}, 1, "",
			"aspen-node exec: work limit 1000 exceeded\n1000\n"},
		{"bad budget", "", []string{primesFile, "--work-budget", "0"}, 2, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := runExec(t, c.stdin, cache, c.args...)
			if r.code != c.code || r.stdout != c.stdout {
				t.Fatalf("exit %d stdout %q stderr %q; want exit %d stdout %q", r.code, r.stdout, r.stderr, c.code, c.stdout)
			}
			if c.stderr != "" && !strings.HasSuffix(r.stderr, c.stderr) && !strings.Contains(r.stderr, c.stderr) {
				t.Fatalf("stderr %q, want it to end with %q", r.stderr, c.stderr)
			}
			if c.code == 2 && !strings.Contains(r.stderr, "Run 'aspen-node exec --help' for usage.") {
				t.Fatalf("usage error without usage: %q", r.stderr)
			}
		})
	}
}

// TestExecWorkIsDeterministic: the work exec reports is the same on every
// run, from a cold cache and a warm one.
func TestExecWorkIsDeterministic(t *testing.T) {
	primes, err := examples.Module("primes")
	if err != nil {
		t.Fatal(err)
	}
	file := execFile(t, "primes.wasm", primes)
	cache := t.TempDir()
	var works []string
	for range 2 {
		r := runExec(t, "1 100000", cache, file, "--work")
		if r.code != 0 || r.stdout != "9592\n" {
			t.Fatalf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
		}
		works = append(works, r.stderr)
	}
	if works[0] != works[1] || works[0] == "0\n" || strings.ContainsAny(strings.TrimSuffix(works[0], "\n"), " \n") {
		t.Fatalf("work %q then %q", works[0], works[1])
	}
}

func TestStandardSeconds(t *testing.T) {
	for work, want := range map[uint64]string{0: "0", 1: "0.000000001", 123456789: "0.123456789", 7_200_000_000_000: "7200", 1_500_000_000: "1.5"} {
		if got := standardSeconds(work); got != want {
			t.Errorf("%d: %q, want %q", work, got, want)
		}
	}
}
