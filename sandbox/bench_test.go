package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	hashchain "github.com/aspen-market/aspen/examples/hashchain/kernel"
	montecarlo "github.com/aspen-market/aspen/examples/montecarlo/kernel"
	primes "github.com/aspen-market/aspen/examples/primes/kernel"
	"github.com/aspen-market/aspen/protocol"
)

// Benchmarks report ratios measured in the same run, alternating the two
// sides of each comparison so that load from other processes hits both.
//
//	go test -run '^$' -bench . -benchtime 5x ./sandbox

type kernelCase struct {
	example string
	input   string
	native  func() string
}

var kernels = []kernelCase{
	{"primes", "1 200000000", func() string {
		return strconv.FormatUint(primes.CountPrimes(1, 200_000_000), 10) + "\n"
	}},
	{"montecarlo", "42 100000000", func() string {
		h := montecarlo.Hits(42, 100_000_000)
		return "pi ~ " + montecarlo.Estimate(h, 100_000_000, 8) + " (hits " + strconv.FormatUint(h, 10) + " of 100000000)\n"
	}},
	{"hashchain", "1000000\nx", func() string {
		return fmt.Sprintf("%x\n", hashchain.Chain([]byte("x"), 1_000_000))
	}},
}

// BenchmarkNativeVsWasm compares a kernel compiled natively with the same
// kernel compiled for wasip1 and run in the sandbox. Both sides are timed
// with the job clock (CPU time of the running thread on Linux, so other
// load on the machine does not skew the ratio); the wasm side includes
// instantiating the module and starting the Go runtime in it. Target
// for the integer kernels (primes, montecarlo): wasm/native ≤ 2. hashchain
// is shown for reference: natively crypto/sha256 uses assembly (SHA-NI),
// in wasm it is pure Go.
func BenchmarkNativeVsWasm(b *testing.B) {
	s := newSandbox(b, Subprocess, nil)
	for _, k := range kernels {
		b.Run(k.example, func(b *testing.B) {
			job := Job{ModuleID: k.example, Module: guestWasm(b, k.example), Input: []byte(k.input)}
			if err := s.Compile(context.Background(), job.ModuleID, job.Module); err != nil {
				b.Fatal(err)
			}
			var native, wasm time.Duration
			b.ResetTimer()
			for b.Loop() {
				clock := startClock()
				want := k.native()
				native += clock.stop()
				r, err := s.Run(context.Background(), job)
				if err != nil || r.Status != StatusOK || string(r.Stdout) != want {
					b.Fatalf("run: %v %s %q, native %q", err, r.Status, r.Stdout, want)
				}
				wasm += r.Duration
			}
			b.ReportMetric(float64(wasm)/float64(native), "wasm/native")
			b.ReportMetric(float64(native.Milliseconds())/float64(b.N), "native-ms/op")
		})
	}
}

// BenchmarkSandboxVsBare compares a compute-heavy job run end to end
// through the sandbox (subprocess executor, deterministic clock and
// randomness, memory allocator, pipes) with the same compiled module run by
// bare wazero in this process. Target: sandbox/bare ≤ 1.05.
func BenchmarkSandboxVsBare(b *testing.B) {
	ctx := context.Background()
	wasm := guestWasm(b, "primes")
	input := []byte("1 30000000")
	s := newSandbox(b, Subprocess, nil)
	job := Job{ModuleID: "primes", Module: wasm, Input: input}
	if err := s.Compile(ctx, job.ModuleID, wasm); err != nil {
		b.Fatal(err)
	}

	cache, err := wazero.NewCompilationCacheWithDir(sharedCacheDir)
	if err != nil {
		b.Fatal(err)
	}
	defer cache.Close(ctx)
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCompilationCache(cache))
	defer rt.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	cm, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		b.Fatal(err)
	}
	bare := func() []byte {
		var out bytes.Buffer
		mod, err := rt.InstantiateModule(ctx, cm, wazero.NewModuleConfig().WithName("").
			WithStdin(bytes.NewReader(input)).WithStdout(&out))
		if err != nil {
			b.Fatal(err)
		}
		mod.Close(ctx)
		return out.Bytes()
	}

	var tBare, tSandbox time.Duration
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		want := bare()
		tBare += time.Since(t0)
		t0 = time.Now()
		r, err := s.Run(ctx, job)
		tSandbox += time.Since(t0)
		if err != nil || r.Status != StatusOK || !bytes.Equal(r.Stdout, want) {
			b.Fatalf("run: %v %s %q, bare %q", err, r.Status, r.Stdout, want)
		}
	}
	b.ReportMetric(float64(tSandbox)/float64(tBare), "sandbox/bare")
	b.ReportMetric(float64(tBare.Milliseconds())/float64(b.N), "bare-ms/op")
}

// BenchmarkTinyRun measures instantiate-and-run of a tiny cached module
// end to end (Run call to Result), alternating the subprocess pool and the
// in-process mode. Target through the subprocess pool: ≤ 100 µs.
func BenchmarkTinyRun(b *testing.B) {
	job := Job{ModuleID: "tiny", Module: tinyHello()}
	var sbs []*Sandbox
	for _, iso := range isolations {
		s := newSandbox(b, iso, nil)
		if err := s.Compile(context.Background(), job.ModuleID, job.Module); err != nil {
			b.Fatal(err)
		}
		sbs = append(sbs, s)
	}
	took := make([]time.Duration, len(sbs))
	b.ResetTimer()
	for b.Loop() {
		for i, s := range sbs {
			t0 := time.Now()
			r, err := s.Run(context.Background(), job)
			took[i] += time.Since(t0)
			if err != nil || r.Status != StatusOK {
				b.Fatal(err, r.Status)
			}
		}
	}
	for i, iso := range isolations {
		b.ReportMetric(float64(took[i].Microseconds())/float64(b.N), iso.String()+"-µs/run")
	}
}

// BenchmarkCompileCache compiles a Go-built module (examples/primes) cold
// (empty cache directory), again in the same executor (in-memory cache),
// in a new sandbox on the same directory as soon as it starts (disk cache),
// and in another once its executor has loaded its recent modules ahead.
// Target: cached compile ≤ 5% of cold.
func BenchmarkCompileCache(b *testing.B) {
	ctx := context.Background()
	wasm := guestWasm(b, "primes")
	id := protocol.BlobCID(wasm).String() // recorded: a CID
	var cold, mem, disk, warmed time.Duration
	for b.Loop() {
		b.StopTimer()
		dir := b.TempDir()
		s1 := newSandbox(b, Subprocess, func(c *Config) { c.CacheDir = dir })
		b.StartTimer()
		t0 := time.Now()
		if err := s1.Compile(ctx, id, wasm); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := s1.Compile(ctx, id, wasm); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		b.StopTimer()
		s1.Close()
		s2 := newSandbox(b, Subprocess, func(c *Config) { c.CacheDir = dir })
		b.StartTimer()
		t3 := time.Now()
		if err := s2.Compile(ctx, id, wasm); err != nil {
			b.Fatal(err)
		}
		disk += time.Since(t3)
		b.StopTimer()
		s2.Close()
		s3 := newSandbox(b, Subprocess, func(c *Config) { c.CacheDir = dir })
		if err := s3.WaitWarm(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		t4 := time.Now()
		if err := s3.Compile(ctx, id, wasm); err != nil {
			b.Fatal(err)
		}
		warmed += time.Since(t4)
		b.StopTimer()
		s3.Close()
		b.StartTimer()
		cold += t1.Sub(t0)
		mem += t2.Sub(t1)
	}
	b.ReportMetric(float64(cold.Milliseconds())/float64(b.N), "cold-ms")
	b.ReportMetric(float64(mem)/float64(cold), "memcached/cold")
	b.ReportMetric(float64(disk)/float64(cold), "diskcached/cold")
	b.ReportMetric(float64(warmed)/float64(cold), "loadedahead/cold")
}
