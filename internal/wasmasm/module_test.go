package wasmasm

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

func TestEmptyModule(t *testing.T) {
	if got := (Module{}).Bytes(); string(got) != Header {
		t.Fatalf("% x", got)
	}
}

// TestModuleBytes checks the encoding of a small module byte by byte.
func TestModuleBytes(t *testing.T) {
	start := uint32(0)
	m := Module{
		Types:   []FuncType{{}, {Params: []byte{I32, I64}, Results: []byte{I32}}},
		Imports: []Import{FuncImport("m", "f", 1)},
		Funcs:   []uint32{0},
		Tables:  [][]byte{Table(FuncRef, Limits(1))},
		Memory:  LimitsMax(1, 2),
		Exports: []Export{FuncExport("g", 1), MemoryExport("mem", 0)},
		Start:   &start,
		Codes:   [][]byte{NewCode().I32Const(-1).Op(OpDrop).Body(Local{Count: 2, Type: I32})},
		Data:    []Data{{Offset: 200, Bytes: []byte("hi")}},
	}
	want := [][]byte{
		[]byte(Header),
		{SecType, 10, 2, 0x60, 0, 0, 0x60, 2, I32, I64, 1, I32},
		{SecImport, 7, 1, 1, 'm', 1, 'f', KindFunc, 1},
		{SecFunction, 2, 1, 0},
		{SecTable, 4, 1, FuncRef, 0, 1},
		{SecMemory, 4, 1, 1, 1, 2},
		{SecExport, 11, 2, 1, 'g', KindFunc, 1, 3, 'm', 'e', 'm', KindMemory, 0},
		{SecStart, 1, 0},
		{SecCode, 9, 1, 7, 1, 2, I32, OpI32Const, 0x7f, OpDrop, OpEnd},
		{SecData, 9, 1, 0, OpI32Const, 0xc8, 0x01, OpEnd, 2, 'h', 'i'},
	}
	if got := m.Bytes(); !bytes.Equal(got, bytes.Join(want, nil)) {
		t.Fatalf("got  % x\nwant % x", got, bytes.Join(want, nil))
	}
}

// TestCommand: Command is the Module it stands for, and it leaves the
// caller's types alone.
func TestCommand(t *testing.T) {
	fdWrite := FuncType{Params: []byte{I32, I32, I32, I32}, Results: []byte{I32}}
	types := []FuncType{fdWrite}
	imports := []Import{FuncImport("wasi_snapshot_preview1", "fd_write", 0)}
	body := NewCode().I32Const(1).I32Const(0).I32Const(1).I32Const(8).Call(0).Op(OpDrop).Body()
	data := Data{Offset: 16, Bytes: []byte("hi\n")}
	want := Module{
		Types:   []FuncType{fdWrite, {}},
		Imports: imports,
		Funcs:   []uint32{1},
		Memory:  Limits(2),
		Exports: []Export{FuncExport("_start", 1), MemoryExport("memory", 0)},
		Codes:   [][]byte{body},
		Data:    []Data{data},
	}.Bytes()
	if got := Command(types[:1:1], imports, 2, body, data); !bytes.Equal(got, want) {
		t.Fatalf("Command\n% x\nwant\n% x", got, want)
	}
	backing := []FuncType{fdWrite, {Params: []byte{I64}}} // spare capacity holding a sentinel
	Command(backing[:1], imports, 1, body)
	if !bytes.Equal(backing[1].Params, []byte{I64}) {
		t.Fatalf("Command wrote into the caller's types: %+v", backing)
	}
}

func TestCodeBuilder(t *testing.T) {
	var c Code
	c.Block().Loop().
		LocalGet(1).LocalSet(200).LocalTee(3).
		I32Const(0).I32Const(64).I32Const(-65).I32Const(-2147483648).
		Call(300).Br(0).BrIf(1).
		I32Load(0).I32Load8U(16).I32Store(128).
		MemoryGrow().If().End().
		End().End()
	want := []byte{
		OpBlock, BlockVoid, OpLoop, BlockVoid,
		OpLocalGet, 1, OpLocalSet, 0xc8, 0x01, OpLocalTee, 3,
		OpI32Const, 0, OpI32Const, 0xc0, 0x00, OpI32Const, 0xbf, 0x7f, OpI32Const, 0x80, 0x80, 0x80, 0x80, 0x78,
		OpCall, 0xac, 0x02, OpBr, 0, OpBrIf, 1,
		OpI32Load, 2, 0, OpI32Load8U, 0, 16, OpI32Store, 2, 0x80, 0x01,
		OpMemoryGrow, 0, OpIf, BlockVoid, OpEnd,
		OpEnd, OpEnd,
	}
	if !bytes.Equal(c, want) {
		t.Fatalf("got  % x\nwant % x", []byte(c), want)
	}
	if got := NewCode().Body(); !bytes.Equal(got, []byte{0, OpEnd}) {
		t.Fatalf("empty body % x", got)
	}
	raw := []byte{OpUnreachable}
	n := NewCode(raw...)
	n.Op(OpNop)
	if raw[0] != OpUnreachable || !bytes.Equal(n.Body(Local{1, I32}, Local{130, I64}), []byte{2, 1, I32, 0x82, 0x01, I64, OpUnreachable, OpNop, OpEnd}) {
		t.Fatalf("body % x", n.Body())
	}
}

var fdIO = FuncType{Params: []byte{I32, I32, I32, I32}, Results: []byte{I32}} // fd_read, fd_write

// echoModule is a WASI command that reads all of stdin into memory at
// 1024 (up to 60 KiB), then writes a prefix from its data section and what
// it read to stdout.
func echoModule() []byte {
	const (
		fdRead, fdWrite = 0, 1
		total, n        = 0, 1 // locals
		buf, bufSize    = 1024, 60 << 10
	)
	var c Code
	// iovec at 0 = {buf + total, bufSize - total}; nread at 8.
	c.Block().Loop()
	c.I32Const(0).LocalGet(total).I32Const(buf).Op(OpI32Add).I32Store(0)
	c.I32Const(4).I32Const(bufSize).LocalGet(total).Op(OpI32Sub).I32Store(0)
	c.I32Const(0).I32Const(0).I32Const(1).I32Const(8).Call(fdRead).BrIf(1) // errno ≠ 0: stop
	c.I32Const(8).I32Load(0).LocalTee(n).Op(OpI32Eqz).BrIf(1)              // EOF: stop
	c.LocalGet(total).LocalGet(n).Op(OpI32Add).LocalTee(total).I32Const(bufSize).Op(OpI32LtU).BrIf(0)
	c.End().End()
	// iovecs at 16: {prefix at 512, 5}, {buf, total}; written at 8.
	c.I32Const(20).I32Const(5).I32Store(0) // the first buf is in the data section
	c.I32Const(24).I32Const(buf).I32Store(0)
	c.I32Const(28).LocalGet(total).I32Store(0)
	c.I32Const(1).I32Const(16).I32Const(2).I32Const(8).Call(fdWrite).Op(OpDrop)
	return Module{
		Types: []FuncType{fdIO, {}},
		Imports: []Import{
			FuncImport(wasi_snapshot_preview1.ModuleName, "fd_read", 0),
			FuncImport(wasi_snapshot_preview1.ModuleName, "fd_write", 0),
		},
		Funcs:   []uint32{1},
		Memory:  Limits(1),
		Exports: []Export{FuncExport("_start", 2), MemoryExport("memory", 0)},
		Codes:   [][]byte{c.Body(Local{Count: 2, Type: I32})},
		Data: []Data{
			{Offset: 16, Bytes: []byte{0, 2, 0, 0}}, // the first iovec's buf: 512
			{Offset: 512, Bytes: []byte("echo:")},
		},
	}.Bytes()
}

// TestRunsUnderWazero: modules built here compile and run as written.
func TestRunsUnderWazero(t *testing.T) {
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)

	echo, err := rt.CompileModule(ctx, echoModule())
	if err != nil {
		t.Fatal(err)
	}
	for i, in := range []string{"", "x", "hello, world", strings.Repeat("0123456789abcdef", 3000)} {
		var out bytes.Buffer
		mod, err := rt.InstantiateModule(ctx, echo, wazero.NewModuleConfig().WithName("").
			WithStdin(strings.NewReader(in)).WithStdout(&out))
		if err != nil {
			t.Fatalf("echo %d: %v", i, err)
		}
		mod.Close(ctx)
		if want := "echo:" + in; out.String() != want {
			t.Fatalf("echo %d: stdout %.40q (%d bytes), want %.40q (%d bytes)", i, out.String(), out.Len(), want, len(want))
		}
	}

	t.Run("exports", func(t *testing.T) { testExports(t, ctx, rt) })
}

// testExports runs a module without imports: functions called with
// arguments, a start function, a table, and a memory with a maximum.
func testExports(t *testing.T, ctx context.Context, rt wazero.Runtime) {
	const acc = 1
	var sum Code // sum(n) = n + (n-1) + ... + 1, in a loop
	sum.Block().Loop()
	sum.LocalGet(0).Op(OpI32Eqz).BrIf(1)
	sum.LocalGet(acc).LocalGet(0).Op(OpI32Add).LocalSet(acc)
	sum.LocalGet(0).I32Const(1).Op(OpI32Sub).LocalSet(0)
	sum.Br(0)
	sum.End().End()
	sum.LocalGet(acc)
	start := uint32(4)
	bin := Module{
		Types: []FuncType{
			{Params: []byte{I32}, Results: []byte{I32}},
			{Results: []byte{I32}},
			{},
		},
		Funcs:  []uint32{0, 0, 1, 0, 2},
		Tables: [][]byte{Table(FuncRef, LimitsMax(1, 2))},
		Memory: LimitsMax(1, 3),
		Exports: []Export{
			FuncExport("sum", 0), FuncExport("grow", 1), FuncExport("neg", 2), FuncExport("load8", 3),
			MemoryExport("memory", 0),
		},
		Start: &start,
		Codes: [][]byte{
			sum.Body(Local{Count: 1, Type: I32}),
			NewCode().LocalGet(0).MemoryGrow().Body(),
			NewCode().I32Const(-123456).Body(),
			NewCode().LocalGet(0).I32Load8U(16).Body(),
			NewCode().I32Const(32).I32Const(-2).I32Store(0).Body(), // start: memory[32:36] = -2
		},
		Data: []Data{{Offset: 16, Bytes: []byte("abc")}},
	}.Bytes()
	mod, err := rt.Instantiate(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	defer mod.Close(ctx)
	call := func(name string, args ...uint64) int32 {
		t.Helper()
		r, err := mod.ExportedFunction(name).Call(ctx, args...)
		if err != nil {
			t.Fatalf("%s%v: %v", name, args, err)
		}
		return int32(r[0])
	}
	for n, want := range map[uint64]int32{0: 0, 1: 1, 10: 55, 1000: 500500} {
		if got := call("sum", n); got != want {
			t.Errorf("sum(%d) = %d, want %d", n, got, want)
		}
	}
	if got := call("neg"); got != -123456 {
		t.Errorf("neg() = %d", got)
	}
	for i, want := range []int32{'a', 'b', 'c', 0} {
		if got := call("load8", uint64(i)); got != want {
			t.Errorf("load8(%d) = %d, want %d", i, got, want)
		}
	}
	if v, ok := mod.Memory().ReadUint32Le(32); !ok || int32(v) != -2 {
		t.Errorf("the start function did not run: memory[32] = %d", int32(v))
	}
	if max, ok := mod.Memory().Definition().Max(); !ok || max != 3 {
		t.Errorf("memory max %d, %v", max, ok)
	}
	if got := call("grow", 2); got != 1 {
		t.Errorf("grow(2) = %d, want 1 (the old size)", got)
	}
	if got := call("grow", 1); got != -1 {
		t.Errorf("grow(1) past the maximum = %d, want -1", got)
	}

	// A module with an import no host gives compiles, but does not
	// instantiate.
	missing := Module{
		Types:   []FuncType{{}},
		Imports: []Import{FuncImport("env", "steal_cycles", 0)},
		Funcs:   []uint32{0},
		Exports: []Export{FuncExport("_start", 1)},
		Codes:   [][]byte{NewCode().Call(0).Body()},
	}.Bytes()
	cm, err := rt.CompileModule(ctx, missing)
	if err != nil {
		t.Fatal(err)
	}
	if fs := cm.ImportedFunctions(); len(fs) != 1 {
		t.Errorf("%d imported functions", len(fs))
	} else if m, n, ok := fs[0].Import(); !ok || m != "env" || n != "steal_cycles" {
		t.Errorf("import %q.%q", m, n)
	}
	if _, err := rt.InstantiateModule(ctx, cm, wazero.NewModuleConfig()); err == nil || !strings.Contains(err.Error(), "env") {
		t.Errorf("missing import: %v", err)
	}
	// A trap is a trap.
	trap := Module{
		Types: []FuncType{{}}, Funcs: []uint32{0}, Exports: []Export{FuncExport("_start", 0)},
		Codes: [][]byte{NewCode(OpUnreachable).Body()},
	}.Bytes()
	if _, err := rt.Instantiate(ctx, trap); err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("unreachable: %v", err)
	}
}
