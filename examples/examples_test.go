package examples

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"pgregory.net/rapid"

	hashchain "github.com/aspen-market/aspen/examples/hashchain/kernel"
	montecarlo "github.com/aspen-market/aspen/examples/montecarlo/kernel"
	primes "github.com/aspen-market/aspen/examples/primes/kernel"
	"github.com/aspen-market/aspen/sandbox"
)

// TestPrebuiltUpToDate rebuilds every example and wants the committed
// wasm/NAME.wasm byte for byte (run go generate ./examples after changing an
// example). Skipped when the installed Go differs from the one that built
// them, since other versions compile differently.
func TestPrebuiltUpToDate(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every example")
	}
	want, err := os.ReadFile(filepath.Join("wasm", "GOVERSION"))
	if err != nil {
		t.Fatal(err)
	}
	have, err := goVersion(t.Context())
	if err != nil {
		t.Skipf("no Go toolchain: %v", err)
	}
	if have != strings.TrimSpace(string(want)) {
		t.Skipf("prebuilt modules are from %s, this toolchain is %s", strings.TrimSpace(string(want)), have)
	}
	dir := t.TempDir()
	for _, name := range Names() {
		path, err := Build(t.Context(), name, dir)
		if err != nil {
			t.Fatal(err)
		}
		built, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		embedded, err := Module(name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(built, embedded) {
			t.Errorf("examples/wasm/%s.wasm is stale: run go generate ./examples", name)
		}
	}
}

func TestNamesAndModules(t *testing.T) {
	entries, err := prebuilt.ReadDir("wasm")
	if err != nil {
		t.Fatal(err)
	}
	var embedded []string
	for _, e := range entries {
		embedded = append(embedded, strings.TrimSuffix(e.Name(), ".wasm"))
	}
	if !slices.Equal(embedded, Names()) {
		t.Fatalf("embedded %v, Names %v", embedded, Names())
	}
	for _, n := range Names() {
		if _, err := os.Stat(filepath.Join(n, "main.go")); err != nil {
			t.Errorf("example %s has no main.go: %v", n, err)
		}
		m, err := Module(n)
		if err != nil || !bytes.HasPrefix(m, []byte("\x00asm")) {
			t.Errorf("Module(%s): %v", n, err)
		}
	}
	if _, err := Module("nope"); !errors.Is(err, ErrUnknown) {
		t.Fatalf("Module(nope): %v", err)
	}
	if _, err := Build(t.Context(), "nope", t.TempDir()); !errors.Is(err, ErrUnknown) {
		t.Fatalf("Build(nope): %v", err)
	}
}

// TestRunInSandbox runs every prebuilt example in the sandbox and compares
// it with its kernel run natively; bad input fails with exit status 2.
func TestRunInSandbox(t *testing.T) {
	cfg := sandbox.DefaultConfig()
	cfg.Isolation = sandbox.InProcess
	cfg.CacheDir = t.TempDir()
	sb, err := sandbox.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	hits := montecarlo.Hits(7, 100000)
	cases := []struct{ name, input, want string }{
		{"primes", "1 1000000", "78498\n"},
		{"primes", "0 100", strconv.FormatUint(primes.CountPrimes(0, 100), 10) + "\n"},
		{"montecarlo", "7 100000", "pi ~ " + montecarlo.Estimate(hits, 100000, 8) + " (hits " + strconv.FormatUint(hits, 10) + " of 100000)\n"},
		{"hashchain", "1000\nhello", fmt.Sprintf("%x\n", hashchain.Chain([]byte("hello"), 1000))},
	}
	for _, c := range cases {
		m, _ := Module(c.name)
		r, err := sb.Run(t.Context(), sandbox.Job{ModuleID: c.name, Module: m, Input: []byte(c.input)})
		if err != nil || r.Err() != nil || string(r.Stdout) != c.want {
			t.Errorf("%s %q: %v %v stdout %q want %q", c.name, c.input, err, r.Err(), r.Stdout, c.want)
		}
		r, err = sb.Run(t.Context(), sandbox.Job{ModuleID: c.name, Module: m, Input: []byte("bad input")})
		if err != nil || r.Status != sandbox.StatusExit || r.ExitCode != 2 || !strings.HasPrefix(r.Message, c.name+": want ") {
			t.Errorf("%s bad input: %v %s %d %q", c.name, err, r.Status, r.ExitCode, r.Message)
		}
	}
}

func naivePrimes(lo, hi uint64) uint64 {
	var n uint64
	for x := lo; x <= hi; x++ {
		if x < 2 {
			continue
		}
		prime := true
		for d := uint64(2); d*d <= x; d++ {
			if x%d == 0 {
				prime = false
				break
			}
		}
		if prime {
			n++
		}
	}
	return n
}

func TestCountPrimesProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		lo := rapid.Uint64Range(0, 3000).Draw(t, "lo")
		hi := rapid.Uint64Range(0, 3000).Draw(t, "hi")
		if got, want := primes.CountPrimes(lo, hi), naivePrimes(lo, hi); got != want {
			t.Fatalf("CountPrimes(%d, %d) = %d, want %d", lo, hi, got, want)
		}
	})
	rapid.Check(t, func(t *rapid.T) { // additive over split ranges, across segments
		a := rapid.Uint64Range(0, 1<<22).Draw(t, "a")
		b := a + rapid.Uint64Range(0, 3<<20).Draw(t, "b-a")
		c := b + 1 + rapid.Uint64Range(0, 3<<20).Draw(t, "c-b")
		if whole, parts := primes.CountPrimes(a, c), primes.CountPrimes(a, b)+primes.CountPrimes(b+1, c); whole != parts {
			t.Fatalf("[%d,%d] = %d but [%d,%d]+[%d,%d] = %d", a, c, whole, a, b, b+1, c, parts)
		}
	})
	for _, k := range []struct{ hi, want uint64 }{{10, 4}, {1e6, 78498}, {1e7, 664579}, {1 << 25, 2063689}} {
		if got := primes.CountPrimes(0, k.hi); got != k.want {
			t.Errorf("π(%d) = %d, want %d", k.hi, got, k.want)
		}
	}
}

func TestMonteCarloProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		hits := rapid.Uint64Range(0, 1<<40).Draw(t, "hits")
		samples := rapid.Uint64Range(max(hits, 1), 1<<56).Draw(t, "samples")
		dec := rapid.IntRange(0, 20).Draw(t, "decimals")
		want := new(big.Rat).SetFrac(new(big.Int).SetUint64(4*hits), new(big.Int).SetUint64(samples))
		scale := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(dec)), nil)
		q := new(big.Int).Quo(new(big.Int).Mul(want.Num(), scale), want.Denom()) // truncated
		s := q.String()
		for len(s) <= dec {
			s = "0" + s
		}
		if dec > 0 {
			s = s[:len(s)-dec] + "." + s[len(s)-dec:]
		}
		if got := montecarlo.Estimate(hits, samples, dec); got != s {
			t.Fatalf("Estimate(%d, %d, %d) = %s, want %s", hits, samples, dec, got, s)
		}
		seed := rapid.Uint64().Draw(t, "seed")
		n := rapid.Uint64Range(1, 2000).Draw(t, "n")
		if h := montecarlo.Hits(seed, n); h > n || h != montecarlo.Hits(seed, n) {
			t.Fatalf("Hits(%d, %d) = %d", seed, n, h)
		}
	})
}

func TestHashChainProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		data := rapid.SliceOf(rapid.Byte()).Draw(t, "data")
		n := rapid.Uint64Range(1, 50).Draw(t, "n")
		next := hashchain.Chain(data, n)
		next = sha256.Sum256(next[:])
		if hashchain.Chain(data, n+1) != next {
			t.Fatal("Chain(d, n+1) != sha256(Chain(d, n))")
		}
	})
	if hashchain.Chain([]byte("abc"), 1) != sha256.Sum256([]byte("abc")) {
		t.Fatal("Chain(d, 1) != sha256(d)")
	}
}

func FuzzParseRange(f *testing.F) {
	f.Add([]byte("1 1000000"))
	f.Add([]byte(" 5\t\n7 "))
	f.Add([]byte("3 2"))
	f.Fuzz(func(t *testing.T, in []byte) {
		lo, hi, err := primes.ParseRange(in)
		if err != nil {
			return
		}
		if lo > hi || hi > primes.MaxHi {
			t.Fatalf("accepted %q as [%d, %d]", in, lo, hi)
		}
		again, again2, err := primes.ParseRange(fmt.Appendf(nil, "%d %d", lo, hi))
		if err != nil || again != lo || again2 != hi {
			t.Fatalf("round trip of %q failed", in)
		}
	})
}

func FuzzParseMonteCarlo(f *testing.F) {
	f.Add([]byte("42 1000"))
	f.Add([]byte("0 0"))
	f.Fuzz(func(t *testing.T, in []byte) {
		seed, n, err := montecarlo.Parse(in)
		if err != nil {
			return
		}
		if n == 0 || n > montecarlo.MaxSamples {
			t.Fatalf("accepted %q as %d samples", in, n)
		}
		s2, n2, err := montecarlo.Parse(fmt.Appendf(nil, "%d %d", seed, n))
		if err != nil || s2 != seed || n2 != n {
			t.Fatalf("round trip of %q failed", in)
		}
	})
}

func FuzzParseHashChain(f *testing.F) {
	f.Add([]byte("3\nhello"))
	f.Add([]byte("1\n"))
	f.Add([]byte("0"))
	f.Fuzz(func(t *testing.T, in []byte) {
		n, data, err := hashchain.Parse(in)
		if err != nil {
			return
		}
		if n == 0 || n > hashchain.MaxRounds || !bytes.HasSuffix(in, data) {
			t.Fatalf("accepted %q as %d rounds of %q", in, n, data)
		}
	})
}
