package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/aspen-market/aspen/examples"
	hashchain "github.com/aspen-market/aspen/examples/hashchain/kernel"
	montecarlo "github.com/aspen-market/aspen/examples/montecarlo/kernel"
	primes "github.com/aspen-market/aspen/examples/primes/kernel"
	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/sandbox"
)

// kernels are the examples' pure-Go kernels, called natively with the
// input the wasm module gets, producing the module's exact stdout (the same
// cases as sandbox/bench_test.go).
var kernels = []struct {
	name    string
	input   string
	integer bool // the ≤ 2× target applies (hashchain: reference only)
	native  func() string
}{
	{"primes", "1 30000000", true, func() string {
		return strconv.FormatUint(primes.CountPrimes(1, 30_000_000), 10) + "\n"
	}},
	{"montecarlo", "42 30000000", true, func() string {
		h := montecarlo.Hits(42, 30_000_000)
		return "pi ~ " + montecarlo.Estimate(h, 30_000_000, 8) + " (hits " + strconv.FormatUint(h, 10) + " of 30000000)\n"
	}},
	{"hashchain", "1000000\nx", false, func() string {
		return fmt.Sprintf("%x\n", hashchain.Chain([]byte("x"), 1_000_000))
	}},
}

// newSandbox starts a sandbox for the figures: subprocess executors at
// normal priority (the figures compare code paths, not priorities) sharing
// the run's compiled-module cache unless mod changes it.
func newSandbox(ctx context.Context, e *env, iso sandbox.Isolation, mod func(*sandbox.Config)) (*sandbox.Sandbox, error) {
	cfg := sandbox.DefaultConfig()
	cfg.Isolation = iso
	cfg.Nice = 0
	cfg.CacheDir = e.cache
	cfg.Timeout = 5 * time.Minute
	if mod != nil {
		mod(&cfg)
	}
	s, err := sandbox.New(cfg)
	if err != nil {
		return nil, err
	}
	if err := s.Start(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// nativeRun runs f on a locked thread and returns its wall and thread CPU
// time.
func nativeRun(f func() string) (out string, wall, cpu time.Duration) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c0, t0 := threadCPU(), time.Now()
	out = f()
	return out, time.Since(t0), threadCPU() - c0
}

// total is the sum of d.
func total(d durations) (t time.Duration) {
	for _, x := range d {
		t += x
	}
	return t
}

// figSandbox: the same kernels native and as wasm through the sandbox
// (≤ 2×), and the sandbox path vs bare wazero on the same compiled module
// (≤ 1.05×). Every comparison alternates its two sides so that load from
// other processes hits both, and keeps the best of the repetitions
// (interference only ever slows a run down).
func figSandbox(ctx context.Context, e *env) ([]Row, error) {
	reps := 3
	if e.quick {
		reps = 1
	}
	s, err := newSandbox(ctx, e, sandbox.Subprocess, nil)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	// The runs compare steady-state speed: let the new executor finish
	// loading the run's recent modules ahead first (a worker's has long
	// done so when jobs come).
	if err := s.WaitWarm(ctx); err != nil {
		return nil, err
	}
	var rows []Row
	for _, k := range kernels {
		mod, err := examples.Module(k.name)
		if err != nil {
			return rows, err
		}
		job := sandbox.Job{ModuleID: protocol.BlobCID(mod).String(), Module: mod, Input: []byte(k.input)}
		if err := s.Compile(ctx, job.ModuleID, mod); err != nil {
			return rows, err
		}
		var nWall, nCPU, wWall, wCPU durations
		// At least reps of each side, more (up to 15) while they take less
		// than a second in all: short kernels are noisy on a shared machine.
		for i := 0; i < reps || !e.quick && i < 15 && total(wWall) < time.Second; i++ {
			out, wall, cpu := nativeRun(k.native)
			nWall, nCPU = append(nWall, wall), append(nCPU, cpu)
			t0 := time.Now()
			r, err := s.Run(ctx, job)
			wWall = append(wWall, time.Since(t0))
			if err != nil || r.Status != sandbox.StatusOK || string(r.Stdout) != out {
				return rows, fmt.Errorf("%s: wasm %v %s %q, native %q", k.name, err, r.Status, r.Stdout, out)
			}
			wCPU = append(wCPU, r.Duration)
		}
		row := Row{Figure: "1 " + k.name + ": wasm run time (job thread CPU)", Value: ms(wCPU.min()), Unit: "ms"}.
			withBaseline(ms(nCPU.min()), "ms", "native").
			note("best of %d; medians wasm %.1f ms, native %.1f ms; wall clock: wasm %.0f ms end to end vs native %.0f ms = %.2f×",
				len(wCPU), ms(wCPU.pct(0.5)), ms(nCPU.pct(0.5)), ms(wWall.min()), ms(nWall.min()), float64(wWall.min())/float64(nWall.min()))
		if k.name == "primes" { // what the guest's start-up adds to every run
			var startup durations
			for range 5 {
				r, err := s.Run(ctx, sandbox.Job{ModuleID: job.ModuleID, Module: mod, Input: []byte("1 1")})
				if err != nil || r.Status != sandbox.StatusOK {
					return rows, fmt.Errorf("primes 1 1: %v %s", err, r.Status)
				}
				startup = append(startup, r.Duration)
			}
			row = row.note("of which the guest's start-up (instantiation and Go runtime, input \"1 1\") %.2f ms", ms(startup.min()))
		}
		if k.integer {
			row = row.target("ratio", "<=", 2)
		} else {
			row = row.note("reference only: natively crypto/sha256 uses SHA-NI assembly, in wasm it is pure Go")
		}
		rows = append(rows, row)
	}

	// Sandbox path vs bare wazero, same compiled module (shared cache).
	mod, _ := examples.Module("primes")
	input := []byte("1 30000000")
	job := sandbox.Job{ModuleID: protocol.BlobCID(mod).String(), Module: mod, Input: input}
	bare, err := newBare(ctx, e.cache)
	if err != nil {
		return rows, err
	}
	defer bare.close(ctx)
	cm, err := bare.rt.CompileModule(ctx, mod)
	if err != nil {
		return rows, err
	}
	var tBare, tSand durations
	for range reps + 2 {
		t0 := time.Now()
		want, err := bare.run(ctx, cm, input)
		tBare = append(tBare, time.Since(t0))
		if err != nil {
			return rows, err
		}
		t0 = time.Now()
		r, err := s.Run(ctx, job)
		tSand = append(tSand, time.Since(t0))
		if err != nil || r.Status != sandbox.StatusOK || !bytes.Equal(r.Stdout, want) {
			return rows, fmt.Errorf("sandbox vs bare: %v %s %q, bare %q", err, r.Status, r.Stdout, want)
		}
	}
	rows = append(rows, Row{Figure: "1 sandbox path vs bare wazero (primes, same compiled module, wall)", Value: ms(tSand.min()), Unit: "ms"}.
		withBaseline(ms(tBare.min()), "ms", "bare wazero in-process").target("ratio", "<=", 1.05).
		note("median of %d: sandbox %.0f ms, bare %.0f ms", len(tSand), ms(tSand.pct(0.5)), ms(tBare.pct(0.5))))
	return rows, nil
}

// bareWazero is a plain wazero runtime with WASI, no sandbox: the
// baseline of the sandbox figures.
type bareWazero struct {
	rt    wazero.Runtime
	cache wazero.CompilationCache
}

func newBare(ctx context.Context, cacheDir string) (*bareWazero, error) {
	cache, err := wazero.NewCompilationCacheWithDir(cacheDir)
	if err != nil {
		return nil, err
	}
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCompilationCache(cache).WithCoreFeatures(api.CoreFeaturesV2))
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	return &bareWazero{rt: rt, cache: cache}, nil
}

func (b *bareWazero) run(ctx context.Context, cm wazero.CompiledModule, input []byte) ([]byte, error) {
	var out bytes.Buffer
	m, err := b.rt.InstantiateModule(ctx, cm, wazero.NewModuleConfig().WithName("").
		WithStdin(bytes.NewReader(input)).WithStdout(&out))
	if err != nil {
		return nil, err
	}
	m.Close(ctx)
	return out.Bytes(), nil
}

func (b *bareWazero) close(ctx context.Context) {
	b.rt.Close(ctx)
	b.cache.Close(ctx)
}

// figStartup: instantiate-and-run of a tiny cached module (≤ 100 µs) and
// the compile of a cached Go-built module vs its cold compile (≤ 5%).
func figStartup(ctx context.Context, e *env) ([]Row, error) {
	runs := 3000
	if e.quick {
		runs = 300
	}
	tiny := spinEchoWasm()
	input := spinInput(0, "hello")
	job := sandbox.Job{ModuleID: protocol.BlobCID(tiny).String(), Module: tiny, Input: input}
	sub, err := newSandbox(ctx, e, sandbox.Subprocess, nil)
	if err != nil {
		return nil, err
	}
	defer sub.Close()
	inp, err := newSandbox(ctx, e, sandbox.InProcess, nil)
	if err != nil {
		return nil, err
	}
	defer inp.Close()
	bare, err := newBare(ctx, e.cache)
	if err != nil {
		return nil, err
	}
	defer bare.close(ctx)
	cm, err := bare.rt.CompileModule(ctx, tiny)
	if err != nil {
		return nil, err
	}
	for _, s := range []*sandbox.Sandbox{sub, inp} {
		if err := s.WaitWarm(ctx); err != nil {
			return nil, err
		}
		if err := s.Compile(ctx, job.ModuleID, tiny); err != nil {
			return nil, err
		}
	}
	var tSub, tIn, tBare durations
	for i := range runs + 100 {
		t0 := time.Now()
		r, err := sub.Run(ctx, job)
		d1 := time.Since(t0)
		if err != nil || r.Status != sandbox.StatusOK || !bytes.Equal(r.Stdout, input) {
			return nil, fmt.Errorf("tiny run: %v %s %q", err, r.Status, r.Stdout)
		}
		t0 = time.Now()
		if _, err := inp.Run(ctx, job); err != nil {
			return nil, err
		}
		d2 := time.Since(t0)
		t0 = time.Now()
		if _, err := bare.run(ctx, cm, input); err != nil {
			return nil, err
		}
		d3 := time.Since(t0)
		if i >= 100 { // warm-up excluded
			tSub, tIn, tBare = append(tSub, d1), append(tIn, d2), append(tBare, d3)
		}
	}
	rows := []Row{
		Row{Figure: "2 tiny cached module: instantiate + run through the executor pool (p50)", Value: us(tSub.pct(0.5)), Unit: "µs"}.
			withBaseline(us(tBare.pct(0.5)), "µs", "bare wazero in-process").target("value", "<=", 100).
			note("%d runs: mean %.0f µs, p99 %.0f µs; in-process sandbox p50 %.0f µs", len(tSub), us(tSub.mean()), us(tSub.pct(0.99)), us(tIn.pct(0.5))),
	}

	// Compile: cold (empty cache directory), again in the same executor
	// (memory cache), and in a fresh sandbox on the same directory (disk
	// cache: another executor, or after a restart).
	mod, err := examples.Module("primes")
	if err != nil {
		return rows, err
	}
	id := protocol.BlobCID(mod).String()
	reps := 2
	if e.quick {
		reps = 1
	}
	var cold, mem, disk, warmed, warmup durations
	for r := range reps {
		dir := filepath.Join(e.dir, fmt.Sprintf("compile-cache-%d", r))
		s1, err := newSandbox(ctx, e, sandbox.Subprocess, func(c *sandbox.Config) { c.CacheDir = dir })
		if err != nil {
			return rows, err
		}
		t0 := time.Now()
		err = s1.Compile(ctx, id, mod)
		t1 := time.Now()
		if err == nil {
			err = s1.Compile(ctx, id, mod)
		}
		t2 := time.Now()
		s1.Close()
		if err != nil {
			return rows, err
		}
		s2, err := newSandbox(ctx, e, sandbox.Subprocess, func(c *sandbox.Config) { c.CacheDir = dir })
		if err != nil {
			return rows, err
		}
		t3 := time.Now()
		err = s2.Compile(ctx, id, mod)
		t4 := time.Now()
		s2.Close()
		if err != nil {
			return rows, err
		}
		// A new executor loads the recently used modules ahead (from its
		// disk cache) as it starts: what a job that comes once it has done
		// so waits for.
		s3, err := newSandbox(ctx, e, sandbox.Subprocess, func(c *sandbox.Config) { c.CacheDir = dir })
		if err != nil {
			return rows, err
		}
		t5 := time.Now()
		err = s3.WaitWarm(ctx)
		t6 := time.Now()
		if err == nil {
			err = s3.Compile(ctx, id, mod)
		}
		t7 := time.Now()
		s3.Close()
		if err != nil {
			return rows, err
		}
		cold, mem, disk = append(cold, t1.Sub(t0)), append(mem, t2.Sub(t1)), append(disk, t4.Sub(t3))
		warmup, warmed = append(warmup, t6.Sub(t5)), append(warmed, t7.Sub(t6))
	}
	// The floor of the disk path: wazero alone, in a fresh process, on a
	// file cache that holds the module (what any executor that starts pays
	// before our own work).
	bareDir := filepath.Join(e.dir, "compile-cache-bare")
	var bareFresh durations
	for r := range reps + 1 {
		d, err := bareCompileFresh(ctx, bareDir)
		if err != nil {
			return rows, fmt.Errorf("bare wazero compile in a fresh process: %w", err)
		}
		if r > 0 { // the first one filled the cache
			bareFresh = append(bareFresh, d)
		}
	}
	rows = append(rows,
		Row{Figure: "2 cached compile of a Go-built module (primes, 2 MB), disk cache: a job as a new executor (or a restart) starts", Value: ms(disk.min()), Unit: "ms"}.
			withBaseline(ms(cold.min()), "ms", "cold compile").target("ratio", "<=", 0.05).
			note("bare wazero alone, in a fresh process on a file cache holding the module: %.1f ms (%.3f× of the cold compile; best of %d): the floor of this row",
				ms(bareFresh.min()), float64(bareFresh.min())/float64(cold.min()), len(bareFresh)),
		Row{Figure: "2 cached compile, new executor or restart, once it has loaded the recent modules ahead", Value: ms(warmed.min()), Unit: "ms"}.
			withBaseline(ms(cold.min()), "ms", "cold compile").target("ratio", "<=", 0.05).
			note("loading ahead took %.0f ms after the executor started (best of %d)", ms(warmup.min()), len(warmup)),
		Row{Figure: "2 cached compile, same executor (memory cache)", Value: ms(mem.min()), Unit: "ms"}.
			withBaseline(ms(cold.min()), "ms", "cold compile").target("ratio", "<=", 0.05),
	)
	return rows, nil
}

// childBareCompile is the argument that makes aspen-bench a child that
// compiles the primes module with bare wazero on a file cache directory and
// prints how long CompileModule took (figure 2's floor for a fresh process).
const childBareCompile = "_bare-compile"

// bareCompileFresh runs a child process that compiles the primes module
// with bare wazero on the file cache in dir and returns its CompileModule
// time.
func bareCompileFresh(ctx context.Context, dir string) (time.Duration, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, self, childBareCompile, dir)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("%v: %s", err, tail(errb.Bytes(), 2000))
	}
	return time.ParseDuration(strings.TrimSpace(out.String()))
}

// runBareCompileChild is the child's side of bareCompileFresh.
func runBareCompileChild(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: aspen-bench", childBareCompile, "DIR")
		return 2
	}
	ctx := context.Background()
	mod, err := examples.Module("primes")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	b, err := newBare(ctx, args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer b.close(ctx)
	t0 := time.Now()
	if _, err := b.rt.CompileModule(ctx, mod); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(time.Since(t0))
	return 0
}
