package wasmmeter

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/aspen-market/aspen/examples"
	w "github.com/aspen-market/aspen/internal/wasmasm"
)

const wasi = "wasi_snapshot_preview1"

var (
	tVoid      = w.FuncType{}
	tI32       = w.FuncType{Results: []byte{w.I32}}
	tI32I32I32 = w.FuncType{Params: []byte{w.I32, w.I32}, Results: []byte{w.I32}}
	tFdWrite   = w.FuncType{Params: []byte{w.I32, w.I32, w.I32, w.I32}, Results: []byte{w.I32}}
)

// newRuntime returns a wazero runtime with WASI, as the sandbox's (without
// its limits).
func newRuntime(t testing.TB) wazero.Runtime {
	t.Helper()
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCoreFeatures(api.CoreFeaturesV2))
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	t.Cleanup(func() { rt.Close(ctx) })
	return rt
}

// outcome is a metered run: the ticks spent (budget minus the counter), its
// stdout and the error that ended it, if any.
type outcome struct {
	spent int64
	out   string
	err   error
}

// runMetered instruments bin and runs it as the sandbox does: instantiate,
// set the counter to budget ticks, call the start export if any, then
// _start.
func runMetered(t testing.TB, rt wazero.Runtime, bin []byte, budget int64, input string) outcome {
	t.Helper()
	met, _, err := Instrument(bin)
	if err != nil {
		t.Fatalf("Instrument: %v", err)
	}
	return runInstrumented(t, rt, met, budget, input)
}

func runInstrumented(t testing.TB, rt wazero.Runtime, met []byte, budget int64, input string) outcome {
	t.Helper()
	ctx := context.Background()
	cm, err := rt.CompileModule(ctx, met)
	if err != nil {
		t.Fatalf("compiling the instrumented module: %v", err)
	}
	defer cm.Close(ctx)
	var out bytes.Buffer
	mod, err := rt.InstantiateModule(ctx, cm, wazero.NewModuleConfig().WithName("").WithStartFunctions().
		WithStdin(strings.NewReader(input)).WithStdout(&out))
	if err != nil {
		t.Fatalf("instantiate: %v", err)
	}
	defer mod.Close(ctx)
	g := mod.ExportedGlobal(CounterExport).(api.MutableGlobal)
	g.Set(uint64(budget))
	if f := mod.ExportedFunction(StartExport); f != nil {
		_, err = f.Call(ctx)
	}
	if err == nil {
		_, err = mod.ExportedFunction("_start").Call(ctx)
	}
	return outcome{spent: budget - int64(g.Get()), out: out.String(), err: err}
}

// countLoop is the body of a loop that counts local 0 down from n:
// 2 + 11×3 + 10×5 = 85 ticks for n = 10.
func countLoop(c *w.Code, n int32) *w.Code {
	c.I32Const(n).LocalSet(0)                                  // 2
	c.Block().Loop()                                           // 0
	c.LocalGet(0).Op(w.OpI32Eqz).BrIf(1)                       // header: 3, n+1 times
	c.LocalGet(0).I32Const(1).Op(w.OpI32Sub).LocalSet(0).Br(0) // 5, n times
	c.End().End()
	return c
}

func TestExactCounts(t *testing.T) {
	rt := newRuntime(t)
	cmd := func(c *w.Code, locals ...w.Local) []byte { return w.Command(nil, nil, 1, c.Body(locals...)) }
	drop := func(c *w.Code, v int32) *w.Code { return c.I32Const(v).Op(w.OpDrop) }
	i32 := w.Local{Count: 1, Type: w.I32}
	ifElse := func(cond int32) []byte {
		c := w.NewCode().I32Const(cond).If() // 2
		drop(c, 5).Else()                    // 2
		drop(drop(c, 6), 7).End()            // 4
		return cmd(c.Op(w.OpNop))
	}
	ifOnly := func(cond int32) []byte {
		c := w.NewCode().I32Const(cond).If() // 2
		drop(c, 5).End()                     // 2
		return cmd(drop(c, 1))               // 2, reached both ways
	}
	brTable := func(k int32) []byte {
		c := w.NewCode().Block().Block()
		c.I32Const(k).Op(0x0e, 1, 0, 1).End() // 2: br_table [0] default 1
		drop(c, 3).End()                      // 2, k = 0 only
		return cmd(drop(c, 4))                // 2
	}
	calls := w.Module{
		Types:   []w.FuncType{tVoid},
		Funcs:   []uint32{0, 0},
		Exports: []w.Export{w.FuncExport("_start", 0)},
		Codes: [][]byte{
			w.NewCode().Call(1).Call(1).Body(), // 16
			drop(w.NewCode(), 1).Body(),        // 2, twice
		},
	}.Bytes()
	iovec := []byte{16, 0, 0, 0, 3, 0, 0, 0} // {buf 16, len 3}
	hello := w.Command([]w.FuncType{tFdWrite}, []w.Import{w.FuncImport(wasi, "fd_write", 0)}, 1,
		w.NewCode().I32Const(1).I32Const(0).I32Const(1).I32Const(8).Call(0).Op(w.OpDrop).Body(), // 4 + 512 + 1 + 64
		w.Data{Offset: 0, Bytes: iovec}, w.Data{Offset: 16, Bytes: []byte("hi\n")})
	start := uint32(1)
	withStart := w.Module{
		Types:   []w.FuncType{tVoid},
		Funcs:   []uint32{0, 0},
		Exports: []w.Export{w.FuncExport("_start", 0)},
		Start:   &start,
		Codes:   [][]byte{drop(w.NewCode(), 1).Body(), drop(drop(w.NewCode(), 1), 2).Body()}, // 2 + 4
	}.Bytes()
	table := w.Module{
		Types:   []w.FuncType{tVoid},
		Funcs:   []uint32{0},
		Tables:  [][]byte{w.Table(w.FuncRef, w.Limits(1))},
		Exports: []w.Export{w.FuncExport("_start", 0)},
		// table.grow 0 (ref.null, 5); drop: 1+1+256+1 + 8×5
		Codes: [][]byte{w.NewCode().Op(w.OpRefNull, w.FuncRef).I32Const(5).Op(w.OpPrefixFC, 15, 0).Op(w.OpDrop).Body()},
	}.Bytes()

	cases := []struct {
		name  string
		bin   []byte
		ticks int64
		trap  string
		out   string
	}{
		{"empty", cmd(w.NewCode()), 0, "", ""},
		{"straight line", cmd(drop(drop(w.NewCode(), 1), 2)), 4, "", ""},
		{"loop", cmd(countLoop(w.NewCode(), 10), i32), 85, "", ""},
		{"if else, then", ifElse(1), 4, "", ""},
		{"if else, else", ifElse(0), 6, "", ""},
		{"if, taken", ifOnly(1), 6, "", ""},
		{"if, not taken", ifOnly(0), 4, "", ""},
		{"br_table to the inner block", brTable(0), 6, "", ""},
		{"br_table to the outer block", brTable(1), 4, "", ""},
		{"early return", cmd(w.NewCode().I32Const(1).If().Op(w.OpReturn).End().I32Const(2).Op(w.OpDrop)), 3, "", ""},
		{"dead code", cmd(drop(drop(w.NewCode().Block().Br(0), 5).End(), 1)), 3, "", ""},
		{"calls", calls, 16 + 2*2, "", ""},
		{"division", cmd(w.NewCode().I32Const(7).I32Const(2).Op(w.OpI32DivS).Op(w.OpDrop)), 11, "", ""},
		{"a trap charges its whole block", cmd(drop(w.NewCode().I32Const(1).I32Const(0).Op(w.OpI32DivS).Op(w.OpDrop), 9)), 13, "integer divide by zero", ""},
		{"host call", w.Command([]w.FuncType{tI32}, []w.Import{w.FuncImport(wasi, "sched_yield", 0)}, 1,
			w.NewCode().Call(0).Op(w.OpDrop).Body()), 513, "", ""},
		{"random_get by size", w.Command([]w.FuncType{tI32I32I32}, []w.Import{w.FuncImport(wasi, "random_get", 0)}, 1,
			w.NewCode().I32Const(0).I32Const(100).Call(0).Op(w.OpDrop).Body()), 515 + 16*100, "", ""},
		{"fd_write by iovec", hello, 517 + 64, "", "hi\n"},
		{"memory.grow by page", cmd(w.NewCode().I32Const(2).MemoryGrow().Op(w.OpDrop)), 514 + 2*65536, "", ""},
		{"memory.fill by byte", cmd(w.NewCode().I32Const(0).I32Const(7).I32Const(1000).Op(w.OpPrefixFC, 11, 0)), 3 + 256 + 1000, "", ""},
		{"table.grow by element", table, 259 + 8*5, "", ""},
		{"start function", withStart, 2 + 4, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := runMetered(t, rt, c.bin, 1<<40, "")
			if c.trap == "" && o.err != nil && !strings.Contains(o.err.Error(), "exit_code(0)") {
				t.Fatalf("run: %v", o.err)
			}
			if c.trap != "" && (o.err == nil || !strings.Contains(o.err.Error(), c.trap)) {
				t.Fatalf("run ended with %v, want a trap %q", o.err, c.trap)
			}
			if o.spent != c.ticks || o.out != c.out {
				t.Fatalf("spent %d ticks, wrote %q; want %d, %q", o.spent, o.out, c.ticks, c.out)
			}
			// The same budget exactly suffices; with one tick less the
			// counter ends below zero (the host's work limit), whether a
			// check stopped the run or it ended between checks.
			if o := runMetered(t, rt, c.bin, c.ticks, ""); o.spent != c.ticks || o.err != nil && c.trap == "" && !strings.Contains(o.err.Error(), "exit_code(0)") {
				t.Fatalf("with a budget of exactly %d ticks: spent %d (%v)", c.ticks, o.spent, o.err)
			}
			if c.ticks > 0 {
				if o := runMetered(t, rt, c.bin, c.ticks-1, ""); o.spent < c.ticks {
					t.Fatalf("with a budget of %d ticks: spent %d, ended with %v", c.ticks-1, o.spent, o.err)
				}
			}
		})
	}
}

// TestBudgetStopsLoops: a loop that never ends stops at its header's
// check once the budget is spent, after exactly the same ticks every run.
func TestBudgetStopsLoops(t *testing.T) {
	rt := newRuntime(t)
	forever := w.Command(nil, nil, 1, w.NewCode().Loop().I32Const(1).Op(w.OpDrop).Br(0).End().Body()) // 3 per iteration
	for range 2 {
		o := runMetered(t, rt, forever, 1000, "")
		if o.err == nil || !strings.Contains(o.err.Error(), "unreachable") || o.spent != 1002 {
			t.Fatalf("spent %d, ended with %v; want 1002 (334 iterations), unreachable", o.spent, o.err)
		}
	}
	// Recursion is stopped at function entries.
	rec := w.Module{
		Types:   []w.FuncType{tVoid},
		Funcs:   []uint32{0, 0},
		Exports: []w.Export{w.FuncExport("_start", 0)},
		Codes:   [][]byte{w.NewCode().Call(1).Body(), w.NewCode().Call(1).Body()},
	}.Bytes()
	if o := runMetered(t, rt, rec, 800, ""); o.err == nil || !strings.Contains(o.err.Error(), "unreachable") || o.spent != 808 {
		t.Fatalf("recursion: spent %d, ended with %v; want 808, unreachable", o.spent, o.err)
	}
	// A sized charge the budget cannot pay stops the run before the
	// operation.
	fill := w.Command(nil, nil, 1, w.NewCode().I32Const(0).I32Const(7).I32Const(65536).Op(w.OpPrefixFC, 11, 0).
		I32Const(0).I32Load8U(0).If().Op(w.OpUnreachable).End().Body()) // memory unchanged below
	if o := runMetered(t, rt, fill, 1000, ""); o.err == nil || !strings.Contains(o.err.Error(), "unreachable") || o.spent <= 1000 {
		t.Fatalf("memory.fill past the budget: spent %d, ended with %v", o.spent, o.err)
	}
}

// TestExamples: a Go-built example gives the same output metered and
// unmetered, and the same count with loop headers merged or not. (The
// sandbox's tests run the others.)
func TestExamples(t *testing.T) {
	rt := newRuntime(t)
	for _, c := range []struct{ name, input, out string }{
		{"primes", "1 100000", "9592\n"},
	} {
		bin, err := examples.Module(c.name)
		if err != nil {
			t.Fatal(err)
		}
		met, st, err := Instrument(bin)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if st.Functions == 0 || st.Charges < st.Functions || st.Checks < st.Functions {
			t.Fatalf("%s: stats %+v", c.name, st)
		}
		a := runInstrumented(t, rt, met, 1<<50, c.input)
		mergeLoopHeaders = false
		unmerged, _, err := Instrument(bin)
		mergeLoopHeaders = true
		if err != nil {
			t.Fatal(err)
		}
		b := runInstrumented(t, rt, unmerged, 1<<50, c.input)
		if a.spent != b.spent || a.out != b.out || a.spent < 1e6 {
			t.Fatalf("%s: runs spent %d and %d ticks (loop headers merged, not), wrote %q and %q", c.name, a.spent, b.spent, a.out, b.out)
		}
		if c.out != "" && a.out != c.out {
			t.Fatalf("%s: wrote %q, want %q", c.name, a.out, c.out)
		}
		// Unmetered, the same output.
		ctx := context.Background()
		var out bytes.Buffer
		if _, err := rt.InstantiateWithConfig(ctx, bin, wazero.NewModuleConfig().WithName("").
			WithStdin(strings.NewReader(c.input)).WithStdout(&out)); err != nil && !strings.Contains(err.Error(), "exit_code(0)") {
			t.Fatalf("%s unmetered: %v", c.name, err)
		}
		if out.String() != a.out {
			t.Fatalf("%s: metered %q, unmetered %q", c.name, a.out, out.String())
		}
		t.Logf("%s %s: %d ticks; %+v", c.name, c.input, a.spent, st)
	}
}

// TestCostShifts: the run-time charges' shifts are the documented costs.
func TestCostShifts(t *testing.T) {
	for _, c := range []struct {
		d    *dynCost
		cost int
	}{{dynMemoryGrow, CostPerPage}, {dynBulkMemory, CostPerByte}, {dynTable, CostPerElement}} {
		if 1<<c.d.shift != c.cost {
			t.Errorf("shift %d for a cost of %d", c.d.shift, c.cost)
		}
	}
	for name, s := range wasiSized {
		want := CostPerIOVec
		if name == "random_get" {
			want = CostPerRandomByte
		}
		if 1<<s.shift != want {
			t.Errorf("%s: shift %d for a cost of %d", name, s.shift, want)
		}
	}
}

// TestRefusals: what the pass cannot decode exactly, or what would let
// the guest reach the counter, is refused with a one-line reason.
func TestRefusals(t *testing.T) {
	body := func(code ...byte) []byte {
		return w.Command(nil, nil, 1, append(append([]byte{1, 1, w.I32}, code...), w.OpEnd)) // one i32 local
	}
	mod := func(m w.Module) []byte {
		m.Types = append(m.Types, tVoid)
		if m.Funcs == nil {
			m.Funcs = []uint32{uint32(len(m.Types) - 1)}
			m.Codes = [][]byte{w.NewCode().Body()}
		}
		return m.Bytes()
	}
	cases := []struct {
		name, want string
		bin        []byte
	}{
		{"not wasm", "not a WebAssembly 1.0 binary", []byte("\x00asm\x02\x00\x00\x00")},
		{"unknown opcode", "unknown or unsupported instruction 0xfe", body(0xfe, 0)},
		{"exceptions", "unknown or unsupported instruction 0x08", body(0x08, 0)},
		{"tail calls", "unknown or unsupported instruction 0x12", body(0x12, 0)},
		{"bad block type", "bad block type", body(w.OpBlock, 0x63, 0x70, w.OpEnd)},
		{"over-long empty block type", "bad block type", body(w.OpBlock, 0xc0, 0x7f, w.OpEnd)},
		{"block type past the types", "bad block type", body(w.OpBlock, 5, w.OpEnd)},
		{"else outside an if", "else outside an if", body(w.OpBlock, 0x40, w.OpElse, w.OpEnd)},
		{"unbalanced", "function body ends inside a block", body(w.OpBlock, 0x40)},
		{"bytes after the end", "bytes after the function's end", body(w.OpEnd, w.OpNop)},
		{"branch too deep", "branch depth 1 out of range", body(w.OpBr, 1)},
		{"br_table too deep", "branch depth 3 out of range", body(0x0e, 1, 0, 3)},
		{"scratch local", "local index out of range", body(w.OpLocalGet, 1, w.OpDrop)},
		{"the counter global", "global index out of range", body(w.OpGlobalGet, 0, w.OpDrop)},
		{"the counter global after others", "global index out of range", mod(w.Module{
			Globals: []w.Global{{Type: w.I64, Init: []byte{w.OpI64Const, 0}}},
			Funcs:   []uint32{0}, Types: []w.FuncType{tVoid},
			Codes: [][]byte{w.NewCode().GlobalGet(1).Op(w.OpDrop).Body()},
		})},
		{"the counter in an initializer", "global index 1 out of range in a constant expression", mod(w.Module{
			Globals: []w.Global{{Type: w.I64, Init: []byte{w.OpGlobalGet, 1}}},
		})},
		{"reserved export", `export name "aspen:work" is reserved`, mod(w.Module{
			Exports: []w.Export{w.FuncExport(CounterExport, 0)},
		})},
		{"exporting the counter", `export "g" of global 0 out of range`, mod(w.Module{
			Exports: []w.Export{w.GlobalExport("g", 0)},
		})},
		{"reserved start export", `export name "aspen:start" is reserved`, mod(w.Module{
			Exports: []w.Export{w.FuncExport(StartExport, 0)},
		})},
		{"start with parameters", "start function 0 takes or returns values", func() []byte {
			s := uint32(0)
			return w.Module{Types: []w.FuncType{{Params: []byte{w.I32}}}, Funcs: []uint32{0}, Start: &s,
				Codes: [][]byte{w.NewCode().Body()}}.Bytes()
		}()},
		{"start out of range", "start function 3 does not exist", func() []byte {
			s := uint32(3)
			return mod(w.Module{Start: &s})
		}()},
		{"over-long SIMD opcode", "bad 0xfd opcode", body(0xfd, 0x8c, 0x00)},
		{"unassigned SIMD opcode", "unknown instruction 0xfd 154", body(0xfd, 0x9a, 0x01)},
		{"relaxed SIMD", "bad 0xfd opcode", body(0xfd, 0x80, 0x02)},
		{"typed select of two", "bad select type", body(w.OpI32Const, 0, w.OpI32Const, 0, w.OpI32Const, 0, 0x1c, 2, w.I32, w.I32, w.OpDrop)},
		{"ref.null of a type index", "bad reference type", body(w.OpRefNull, 0, w.OpDrop)},
		{"memory.size of memory 1", "bad memory index", body(0x3f, 1, w.OpDrop)},
		{"memory.copy between memories", "bad immediate of instruction 0xfc 10", body(0xfc, 10, 0, 1)},
		{"unknown 0xfc", "unknown or unsupported instruction 0xfc 18", body(0xfc, 18)},
		{"truncated constant", "bad float constant", body(0x44, 0, 0)},
		{"functions without bodies", "1 function bodies for 2 functions", w.Module{
			Types: []w.FuncType{tVoid}, Funcs: []uint32{0, 0}, Codes: [][]byte{w.NewCode().Body()},
		}.Bytes()},
		{"sections out of order", "out of order or repeated", append(w.Module{Types: []w.FuncType{tVoid}}.Bytes(), w.Section(w.SecType, []byte{0})...)},
	}
	for _, c := range cases {
		_, _, err := Instrument(c.bin)
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want a refusal saying %q", c.name, err, c.want)
		}
	}
}

// TestNoGlobalOrExportSection: the counter's global and export sections
// are created in their place when the module has none, and kept in order
// when it has both.
func TestNoGlobalOrExportSection(t *testing.T) {
	rt := newRuntime(t)
	ctx := context.Background()
	for _, m := range []w.Module{
		{Types: []w.FuncType{tVoid}, Funcs: []uint32{0}, Codes: [][]byte{w.NewCode().Body()}, Data: []w.Data{{Offset: 0, Bytes: []byte("x")}}, Memory: w.Limits(1)},
		{Types: []w.FuncType{tVoid}, Funcs: []uint32{0}, Codes: [][]byte{w.NewCode().Body()},
			Globals: []w.Global{{Type: w.I32, Init: []byte{w.OpI32Const, 7}}}, Exports: []w.Export{w.FuncExport("f", 0)}},
		{},
	} {
		met, _, err := Instrument(m.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		cm, err := rt.CompileModule(ctx, met)
		if err != nil {
			t.Fatalf("% x: %v", met, err)
		}
		mod, err := rt.InstantiateModule(ctx, cm, wazero.NewModuleConfig().WithName(""))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := mod.ExportedGlobal(CounterExport).(api.MutableGlobal); !ok {
			t.Fatalf("no counter in % x", met)
		}
		mod.Close(ctx)
	}
}

// BenchmarkInstrument: the pass on a 2 MB Go-built module.
func BenchmarkInstrument(b *testing.B) {
	bin, err := examples.Module("primes")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(bin)))
	for b.Loop() {
		if _, _, err := Instrument(bin); err != nil {
			b.Fatal(err)
		}
	}
}

// TestLoopMergeExact: moving a loop header's cost to the blocks that enter
// it changes where charges are made, never what a run that completes is
// charged: the same ticks with and without, on loop shapes where it
// applies and where it must not.
func TestLoopMergeExact(t *testing.T) {
	rt := newRuntime(t)
	i32 := w.Local{Count: 2, Type: w.I32}
	// A dispatcher as Go's compiler writes: a loop around a br_table, each
	// case jumping back with br. 2 + 5×(3+4+5) + 3 = 65 ticks.
	dispatch := w.NewCode().I32Const(5).LocalSet(0)
	dispatch.Block().Loop()
	dispatch.LocalGet(0).Op(w.OpI32Eqz).BrIf(1)
	dispatch.Block().Block().LocalGet(0).I32Const(1).Op(0x71).Op(0x0e, 1, 0, 1).End() // i32.and; br_table [0] 1
	dispatch.LocalGet(0).I32Const(1).Op(w.OpI32Sub).LocalSet(0).Br(1).End()
	dispatch.LocalGet(0).I32Const(1).Op(w.OpI32Sub).LocalSet(0).Br(0)
	dispatch.End().End()
	// Nested loops: the inner one counts local 1 down from 3, the outer
	// local 0 from 4; the inner header's block jumps to the outer loop.
	nested := w.NewCode().I32Const(4).LocalSet(0)
	nested.Block().Loop() // outer
	nested.LocalGet(0).Op(w.OpI32Eqz).BrIf(1)
	nested.LocalGet(0).I32Const(1).Op(w.OpI32Sub).LocalSet(0).I32Const(3).LocalSet(1)
	nested.Loop()                                      // inner
	nested.LocalGet(1).Op(w.OpI32Eqz).If().Br(2).End() // inner done: back to the outer loop
	nested.LocalGet(1).I32Const(1).Op(w.OpI32Sub).LocalSet(1).Br(0)
	nested.End().End().End()
	// A loop that jumps back with br_if: not merged.
	brIf := w.NewCode().I32Const(7).LocalSet(0)
	brIf.Loop().LocalGet(0).I32Const(1).Op(w.OpI32Sub).LocalTee(0).BrIf(0).End()
	for _, c := range []struct {
		name   string
		code   *w.Code
		ticks  int64
		merged int
	}{
		{"dispatcher", dispatch, 65, 1},
		{"nested loops", nested, 0, 2},
		{"br_if back edge", brIf, 2 + 7*5, 0},
	} {
		bin := w.Command(nil, nil, 1, c.code.Body(i32))
		var spent [2]int64
		for i, merge := range []bool{false, true} {
			mergeLoopHeaders = merge
			met, st, err := Instrument(bin)
			mergeLoopHeaders = true
			if err != nil {
				t.Fatal(err)
			}
			if merge && st.LoopsMerged != c.merged {
				t.Errorf("%s: %d loops merged, want %d", c.name, st.LoopsMerged, c.merged)
			}
			o := runInstrumented(t, rt, met, 1<<40, "")
			if o.err != nil {
				t.Fatalf("%s: %v", c.name, o.err)
			}
			spent[i] = o.spent
			// The budget still stops the run exactly there.
			if o := runInstrumented(t, rt, met, o.spent, ""); o.spent != spent[i] || o.err != nil {
				t.Fatalf("%s, merge %v: budget %d: spent %d, %v", c.name, merge, spent[i], o.spent, o.err)
			}
			if o := runInstrumented(t, rt, met, o.spent-1, ""); o.spent <= spent[i]-1 {
				t.Fatalf("%s, merge %v: budget %d: spent %d", c.name, merge, spent[i]-1, o.spent)
			}
		}
		if spent[0] != spent[1] || c.ticks != 0 && spent[0] != c.ticks {
			t.Errorf("%s: %d ticks unmerged, %d merged; want %d", c.name, spent[0], spent[1], c.ticks)
		}
	}
}
