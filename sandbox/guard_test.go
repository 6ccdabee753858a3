package sandbox

import (
	"bytes"
	"context"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/aspen-market/aspen/internal/wasmasm"
)

// dataSegments returns the number of segments in bin's data section.
func dataSegments(t *testing.T, bin []byte) int {
	t.Helper()
	r := wasmReader{b: bin[8:]}
	for len(r.b) > 0 {
		id := r.byte()
		body := r.take(r.u32("size"), "section")
		if id == 11 {
			br := wasmReader{b: body}
			return int(br.u32("count"))
		}
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	return 0
}

// initialMemory instantiates bin with bare wazero and returns its memory.
func initialMemory(t *testing.T, bin []byte) []byte {
	t.Helper()
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCoreFeatures(api.CoreFeaturesV2))
	defer rt.Close(ctx)
	m, err := rt.InstantiateWithConfig(ctx, bin, wazero.NewModuleConfig().WithStartFunctions())
	if err != nil {
		t.Fatal(err)
	}
	mem, ok := m.Memory().Read(0, m.Memory().Size())
	if !ok {
		t.Fatal("memory not readable")
	}
	return bytes.Clone(mem)
}

func TestGuardCoalescesDataSegments(t *testing.T) {
	seg := func(off uint32, s string) wasmasm.Data { return wasmasm.Data{Offset: off, Bytes: []byte(s)} }
	m := wasmasm.Module{
		Memory:  wasmasm.Limits(1),
		Exports: []wasmasm.Export{wasmasm.MemoryExport("memory", 0)},
		Data: []wasmasm.Data{
			seg(0, "ab"), seg(2, "cd"), seg(10, "ef"), // adjacent, then a gap of 6: one segment
			seg(10+2+maxDataGap, "gh"), // a gap of exactly maxDataGap: joined
			seg(200, "ij"),             // a larger gap: a new segment
			seg(201, "X"),              // overlaps: kept apart, applied after
			seg(300, ""), seg(300, "kl"),
			seg(65534, "mn"), // at the end of the memory
		},
	}
	bin := m.Bytes()
	out, _, err := guard(bin)
	if err != nil {
		t.Fatal(err)
	}
	if got := dataSegments(t, out); got != 5 {
		t.Errorf("%d data segments after the guard, want 5", got)
	}
	want := initialMemory(t, bin)
	if !bytes.Equal(initialMemory(t, out), want) {
		t.Fatal("the guarded module starts with different memory")
	}
	if want[201] != 'X' || want[300] != 'k' {
		t.Fatalf("test module: memory %q", want[195:305])
	}
	if again, _, err := guard(out); err != nil || !bytes.Equal(again, out) {
		t.Fatalf("guard is not idempotent: %v", err)
	}

	// A module that can name data segments (it has a data count section)
	// keeps them as they are.
	var withCount []byte
	for _, s := range splitSections(t, bin) {
		if s[0] == 11 {
			withCount = append(withCount, 12, 1, byte(len(m.Data)))
		}
		withCount = append(withCount, s...)
	}
	out, _, err = guard(withCount)
	if err != nil {
		t.Fatal(err)
	}
	if got := dataSegments(t, out); got != len(m.Data) {
		t.Errorf("with a data count section: %d data segments after the guard, want %d", got, len(m.Data))
	}

	// Out of bounds stays out of bounds.
	m.Data = []wasmasm.Data{seg(65530, "abc"), seg(65534, "def")}
	if out, _, err = guard(m.Bytes()); err != nil || dataSegments(t, out) != 1 {
		t.Fatalf("guard: %v", err)
	}
	eng, err := newEngine(context.Background(), "", 8)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.close()
	m.Types, m.Funcs, m.Codes = []wasmasm.FuncType{tVoid}, []uint32{0}, [][]byte{wasmasm.NewCode().Body()}
	m.Exports = append(m.Exports, wasmasm.FuncExport("_start", 0))
	mod := eng.compile(context.Background(), "oob", m.Bytes(), 1<<20)
	defer eng.release(mod)
	if mod.fail == nil || mod.fail.status != StatusInvalidModule {
		t.Fatalf("out-of-bounds data: %+v", mod.fail)
	}
}

// splitSections returns bin's sections (id, size and body each) after the
// header, and the header as the first.
func splitSections(t *testing.T, bin []byte) [][]byte {
	t.Helper()
	out := [][]byte{bin[:8]}
	r := wasmReader{b: bin[8:]}
	for len(r.b) > 0 {
		rest := r.b
		r.byte()
		r.take(r.u32("size"), "section")
		if r.err != nil {
			t.Fatal(r.err)
		}
		out = append(out, rest[:len(rest)-len(r.b)])
	}
	return out
}
