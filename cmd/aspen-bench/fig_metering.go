package main

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
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
// Target: metered ≤ 1.15× unmetered. It also reports the metered work
// and the units per second this machine performs (what speed 1.0 =
// WorkPerSecond calibrates against), and the pass's own time on a 2 MB
// Go-built module.
func figMetering(ctx context.Context, e *env) ([]Row, error) {
	reps := 7
	if e.quick {
		reps = 2
	}
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCoreFeatures(api.CoreFeaturesV2))
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
			note("best of %d; medians %.1f vs %.1f ms = %.3f×", len(metered), ms(metered.pct(0.5)), ms(plain.pct(0.5)),
				float64(metered.pct(0.5))/float64(plain.pct(0.5))).
			note("work %d units (%d ticks): this machine %.2fe9 units/s metered, %.2fe9 per unmetered second (speed %.2f at %d units/s)",
				units, ticks, perSec/1e9, float64(units)/plain.min().Seconds()/1e9, float64(units)/plain.min().Seconds()/sandbox.WorkPerSecond,
				sandbox.WorkPerSecond)
		if k.integer {
			row = row.target("ratio", "<=", 1.15)
		} else {
			row = row.note("reference: no target")
		}
		rows = append(rows, row)
	}

	// The pass itself, on the 2 MB module figure 2 compiles.
	bin, err := examples.Module("primes")
	if err != nil {
		return rows, err
	}
	var pass durations
	var st wasmmeter.Stats
	var size int
	for range reps + 3 {
		t0 := time.Now()
		met, s, err := wasmmeter.Instrument(bin)
		pass = append(pass, time.Since(t0))
		if err != nil {
			return rows, err
		}
		st, size = s, len(met)
	}
	rows = append(rows, Row{Figure: "9 metering pass on a Go-built module (primes, wall)", Value: ms(pass.min()), Unit: "ms"}.
		note("median %.1f ms; %.2f MB in, %.2f MB out (+%.0f%%); %d functions, %d charges, %d checks, %d sized charges",
			ms(pass.pct(0.5)), float64(len(bin))/1e6, float64(size)/1e6, 100*float64(size-len(bin))/float64(len(bin)),
			st.Functions, st.Charges, st.Checks, st.Sized))
	return rows, nil
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
