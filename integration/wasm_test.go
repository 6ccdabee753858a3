package integration

import "github.com/aspen-market/aspen/internal/wasmasm"

// The hostile modules the consumer is given, assembled by hand: one that
// loops forever, one that allocates without end, one that imports what the
// sandbox does not give, and an echo (stdin to stdout) used to make results
// larger than the inline limit.

// startOnly is a module whose _start runs body, with pages of memory.
func startOnly(pages uint32, body []byte) []byte {
	return wasmasm.Module{
		Types:   []wasmasm.FuncType{{}},
		Funcs:   []uint32{0},
		Memory:  wasmasm.Limits(pages),
		Exports: []wasmasm.Export{wasmasm.FuncExport("_start", 0), wasmasm.MemoryExport("memory", 0)},
		Codes:   [][]byte{body},
	}.Bytes()
}

// loopForever never returns: loop br 0 end.
func loopForever() []byte {
	return startOnly(1, wasmasm.NewCode().Loop().Br(0).End().Body())
}

// allocForever grows its memory 16 pages at a time until growing fails,
// then traps (unreachable) — under a memory cap the sandbox stops it first.
func allocForever() []byte {
	return startOnly(1, wasmasm.NewCode().
		Loop().
		I32Const(16).MemoryGrow().
		I32Const(-1).Op(wasmasm.OpI32Ne).
		BrIf(0).
		End().
		Op(wasmasm.OpUnreachable).
		Body())
}

// missingImport imports env.steal_cycles, which no sandbox provides.
func missingImport() []byte {
	return wasmasm.Module{
		Types:   []wasmasm.FuncType{{}},
		Imports: []wasmasm.Import{wasmasm.FuncImport("env", "steal_cycles", 0)},
		Funcs:   []uint32{0},
		Memory:  wasmasm.Limits(1),
		Exports: []wasmasm.Export{wasmasm.FuncExport("_start", 1), wasmasm.MemoryExport("memory", 0)},
		Codes:   [][]byte{wasmasm.NewCode().Call(0).Body()},
	}.Bytes()
}

// echo copies up to 64 KiB of stdin to stdout with one fd_read and one
// fd_write.
func echo() []byte {
	const fdRead, fdWrite = 0, 1
	var c wasmasm.Code
	c.I32Const(0).I32Const(1024).I32Store(0)                                            // iov.buf = 1024
	c.I32Const(4).I32Const(65536).I32Store(0)                                           // iov.len = 64 KiB
	c.I32Const(0).I32Const(0).I32Const(1).I32Const(16).Call(fdRead).Op(wasmasm.OpDrop)  // fd_read(0, iov, 1, &n)
	c.I32Const(4).I32Const(16).I32Load(0).I32Store(0)                                   // iov.len = n
	c.I32Const(1).I32Const(0).I32Const(1).I32Const(24).Call(fdWrite).Op(wasmasm.OpDrop) // fd_write(1, iov, 1, &m)
	tIO := wasmasm.FuncType{Params: []byte{wasmasm.I32, wasmasm.I32, wasmasm.I32, wasmasm.I32}, Results: []byte{wasmasm.I32}}
	return wasmasm.Module{
		Types: []wasmasm.FuncType{tIO, {}},
		Imports: []wasmasm.Import{
			wasmasm.FuncImport("wasi_snapshot_preview1", "fd_read", 0),
			wasmasm.FuncImport("wasi_snapshot_preview1", "fd_write", 0),
		},
		Funcs:   []uint32{1},
		Memory:  wasmasm.Limits(2),
		Exports: []wasmasm.Export{wasmasm.FuncExport("_start", 2), wasmasm.MemoryExport("memory", 0)},
		Codes:   [][]byte{c.Body()},
	}.Bytes()
}
