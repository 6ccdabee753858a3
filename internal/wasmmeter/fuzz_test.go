package wasmmeter

import (
	"errors"
	"strings"
	"testing"

	w "github.com/aspen-market/aspen/internal/wasmasm"
)

// FuzzInstrument feeds arbitrary bytes to the pass: it never panics, every
// refusal is ErrMalformed with a one-line reason, and its output cannot be
// metered twice (it exports the counter). Whether the output is valid
// exactly when the input was is fuzzed by the sandbox's FuzzMeter, behind
// the guard that keeps wazero's decoder from allocating what a hostile
// count asks for.
func FuzzInstrument(f *testing.F) {
	for _, seed := range fuzzSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, bin []byte) {
		out, _, err := Instrument(bin)
		if err != nil {
			if !errors.Is(err, ErrMalformed) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("refusal %q", err)
			}
			return
		}
		if _, _, err := Instrument(out); err == nil || !strings.Contains(err.Error(), "reserved") {
			t.Fatalf("metered twice: %v", err)
		}
	})
}

// fuzzSeeds are small modules that use every kind of charge.
func fuzzSeeds() [][]byte {
	loop := w.NewCode()
	countLoop(loop, 3)
	start := uint32(1)
	return [][]byte{
		w.Command(nil, nil, 1, loop.Body(w.Local{Count: 1, Type: w.I32})),
		w.Command([]w.FuncType{tFdWrite}, []w.Import{w.FuncImport(wasi, "fd_write", 0)}, 1,
			w.NewCode().I32Const(1).I32Const(0).I32Const(1).I32Const(8).Call(0).Op(w.OpDrop).Body()),
		w.Command(nil, nil, 1, w.NewCode().I32Const(1).If().I32Const(2).Op(w.OpDrop).Else().Op(w.OpNop).End().
			Block().Block().I32Const(0).Op(0x0e, 1, 0, 1).End().End().Body()),
		w.Command(nil, nil, 1, w.NewCode().I32Const(0).I32Const(7).I32Const(9).Op(w.OpPrefixFC, 11, 0).
			Op(0xfd, 12).Op(make([]byte, 16)...).Op(0xfd, 0xba, 0x01, w.OpDrop).Body()),
		w.Module{
			Types: []w.FuncType{tVoid}, Funcs: []uint32{0, 0}, Start: &start,
			Globals: []w.Global{{Type: w.I64, Mutable: true, Init: []byte{w.OpI64Const, 1}}},
			Exports: []w.Export{w.FuncExport("_start", 0)},
			Codes:   [][]byte{w.NewCode().GlobalGet(0).Op(w.OpDrop).Body(), w.NewCode().Call(0).Body()},
		}.Bytes(),
	}
}
