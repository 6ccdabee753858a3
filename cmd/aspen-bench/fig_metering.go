package main

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/aspen-market/aspen/examples"
	"github.com/aspen-market/aspen/internal/wasmmeter"
	"github.com/aspen-market/aspen/sandbox"
)

// figMetering: what counting a job's work costs. Each figure-1 kernel runs
// as the sandbox compiles it (metered: internal/wasmmeter) and as it was
// built (unmetered), in one wazero runtime configured as the sandbox's,
// alternating, timed by the thread's CPU clock over _start alone
// (instantiation is the same on both sides, and the guard's data-segment
// coalescing, which the sandbox also applies, would only change that).
// Target: metered ≤ 1.15× unmetered on every kernel (issue 14; figure 1
// exempts hashchain from its native target because Go's native SHA-256 is
// assembly, which does not apply here: both sides are wasm). It also
// reports the metered work and the units per second this machine performs
// (what speed 1.0 = WorkPerSecond calibrates against), and the pass's own
// time on a 2 MB Go-built module against the cold compile that follows it.
func figMetering(ctx context.Context, e *env) ([]Row, error) {
	reps := 7
	if e.quick {
		reps = 2
	}
	rt := wazero.NewRuntimeWithConfig(ctx, meteringRuntimeConfig())
	defer rt.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	var rows []Row
	for _, k := range kernels {
		bin, err := examples.Module(k.name)
		if err != nil {
			return rows, err
		}
		met, _, err := wasmmeter.Instrument(bin)
		if err != nil {
			return rows, fmt.Errorf("%s: %w", k.name, err)
		}
		cmPlain, err := rt.CompileModule(ctx, bin)
		if err != nil {
			return rows, err
		}
		cmMet, err := rt.CompileModule(ctx, met)
		if err != nil {
			return rows, err
		}
		want := k.native()
		var plain, metered durations
		var ticks uint64
		// At least reps of each, more (up to 21) while they take less than
		// two seconds in all: a few percent is the noise of a shared
		// machine on a short kernel.
		for i := 0; i < reps || !e.quick && i < 21 && total(metered) < 2*time.Second; i++ {
			d, _, out, err := runStart(ctx, rt, cmPlain, k.input, false)
			if err != nil || out != want {
				return rows, fmt.Errorf("%s unmetered: %v %q", k.name, err, out)
			}
			plain = append(plain, d)
			d, t, out, err := runStart(ctx, rt, cmMet, k.input, true)
			if err != nil || out != want {
				return rows, fmt.Errorf("%s metered: %v %q", k.name, err, out)
			}
			if ticks != 0 && t != ticks {
				return rows, fmt.Errorf("%s: metered %d ticks, then %d", k.name, ticks, t)
			}
			ticks, metered = t, append(metered, d)
		}
		cmPlain.Close(ctx)
		cmMet.Close(ctx)
		units := (ticks + wasmmeter.TicksPerUnit - 1) / wasmmeter.TicksPerUnit
		perSec := float64(units) / metered.min().Seconds()
		row := Row{Figure: "9 " + k.name + ": metered run time (_start, thread CPU)", Value: ms(metered.min()), Unit: "ms"}.
			withBaseline(ms(plain.min()), "ms", "unmetered").
			note("best of %d; medians %.1f vs %.1f ms = %.3f×; paired runs' ratios %s", len(metered), ms(metered.pct(0.5)), ms(plain.pct(0.5)),
				float64(metered.pct(0.5))/float64(plain.pct(0.5)), pairedRatios(metered, plain)).
			note("work %d units (%d ticks): this machine %.2fe9 units/s metered, %.2fe9 per unmetered second (speed %.2f at %d units/s)",
				units, ticks, perSec/1e9, float64(units)/plain.min().Seconds()/1e9, float64(units)/plain.min().Seconds()/sandbox.WorkPerSecond,
				sandbox.WorkPerSecond)
		rows = append(rows, row.target("ratio", "<=", 1.15))
	}

	row, err := meteringPass(ctx, reps+3)
	return append(rows, row), err
}

// pairedRatios summarises a[i]/b[i] over runs made one after the other,
// which share the machine's load: min, median and max.
func pairedRatios(a, b durations) string {
	r := make([]float64, len(a))
	for i := range a {
		r[i] = float64(a[i]) / float64(b[i])
	}
	slices.Sort(r)
	return fmt.Sprintf("%.3f–%.3f×, median %.3f×", r[0], r[len(r)-1], r[(len(r)-1)/2])
}

// meteringRuntimeConfig is the sandbox's runtime configuration (sandbox
// newEngine) without its compilation cache.
func meteringRuntimeConfig() wazero.RuntimeConfig {
	return wazero.NewRuntimeConfig().WithDebugInfoEnabled(false).WithCoreFeatures(api.CoreFeaturesV2)
}

// meteringPass times the pass itself on the 2 MB module figure 2
// compiles, against the cold compile of the unmetered module (what a
// sandbox without metering would do first), alternating with it and with
// the cold compile of the metered module, which the sandbox now does
// instead: a cold start pays the pass plus the difference of the two
// compiles. Each compile is a fresh runtime with no cache; all wall clock.
func meteringPass(ctx context.Context, n int) (Row, error) {
	bin, err := examples.Module("primes")
	if err != nil {
		return Row{}, err
	}
	compile := func(wasm []byte) (time.Duration, error) {
		rt := wazero.NewRuntimeWithConfig(ctx, meteringRuntimeConfig())
		defer rt.Close(ctx)
		t0 := time.Now()
		cm, err := rt.CompileModule(ctx, wasm)
		d := time.Since(t0)
		if err != nil {
			return 0, err
		}
		return d, cm.Close(ctx)
	}
	var pass, plain, metered durations
	var st wasmmeter.Stats
	var met []byte
	for range n {
		d, err := compile(bin)
		if err != nil {
			return Row{}, fmt.Errorf("compile primes: %w", err)
		}
		plain = append(plain, d)
		t0 := time.Now()
		met, st, err = wasmmeter.Instrument(bin)
		pass = append(pass, time.Since(t0))
		if err != nil {
			return Row{}, err
		}
		if d, err = compile(met); err != nil {
			return Row{}, fmt.Errorf("compile metered primes: %w", err)
		}
		metered = append(metered, d)
	}
	added := pass.min() + metered.min() - plain.min()
	return Row{Figure: "9 metering pass on a Go-built module (primes, 2 MB, wall)", Value: ms(pass.min()), Unit: "ms"}.
		withBaseline(ms(plain.min()), "ms", "cold compile, unmetered").
		note("best of %d, median %.1f ms; %.2f MB in, %.2f MB out (+%.0f%%); %d functions, %d charges, %d checks, %d sized charges",
			len(pass), ms(pass.pct(0.5)), float64(len(bin))/1e6, float64(len(met))/1e6, 100*float64(len(met)-len(bin))/float64(len(bin)),
			st.Functions, st.Charges, st.Checks, st.Sized).
		note("cold compile of the metered module %.0f ms (median %.0f; unmetered median %.0f): a cold start pays the pass plus %.0f ms more compiling, %.0f ms in all (%.2f× the unmetered compile)",
			ms(metered.min()), ms(metered.pct(0.5)), ms(plain.pct(0.5)), ms(metered.min()-plain.min()), ms(added),
			float64(plain.min()+added)/float64(plain.min())), nil
}

// runStart instantiates cm with input on stdin, sets its work counter if
// metered, and runs _start on a locked thread; it returns _start's thread
// CPU time, the ticks it spent and its stdout.
func runStart(ctx context.Context, rt wazero.Runtime, cm wazero.CompiledModule, input string, metered bool) (time.Duration, uint64, string, error) {
	var out bytes.Buffer
	mod, err := rt.InstantiateModule(ctx, cm, wazero.NewModuleConfig().WithName("").WithStartFunctions().
		WithStdin(strings.NewReader(input)).WithStdout(&out))
	if err != nil {
		return 0, 0, "", err
	}
	defer mod.Close(ctx)
	const budget = 1 << 62
	var counter api.MutableGlobal
	if metered {
		var ok bool
		if counter, ok = mod.ExportedGlobal(wasmmeter.CounterExport).(api.MutableGlobal); !ok {
			return 0, 0, "", fmt.Errorf("no work counter")
		}
		counter.Set(budget)
	}
	start := mod.ExportedFunction("_start")
	runtime.LockOSThread()
	c0 := threadCPU()
	_, err = start.Call(ctx)
	d := threadCPU() - c0
	runtime.UnlockOSThread()
	if err != nil && !strings.Contains(err.Error(), "exit_code(0)") {
		return 0, 0, "", err
	}
	var ticks uint64
	if counter != nil {
		ticks = budget - counter.Get()
	}
	return d, ticks, out.String(), nil
}
