package integration

import "github.com/aspen-market/aspen/internal/wasmasm"

// The hostile modules the consumer is given, assembled by hand: one that
// loops forever, one that allocates without end, one that imports what the
// sandbox does not give, and an echo (stdin to stdout) used to make results
// larger than the inline limit.

// startOnly is a module whose _start runs body, with pages of memory.
func startOnly(pages uint32, body []byte) []byte { return wasmasm.Command(nil, nil, pages, body) }

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
	// Type 0 is () -> (), the type Command gives _start.
	return wasmasm.Command(nil, []wasmasm.Import{wasmasm.FuncImport("env", "steal_cycles", 0)}, 1,
		wasmasm.NewCode().Call(0).Body())
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
	return wasmasm.Command([]wasmasm.FuncType{tIO}, []wasmasm.Import{
		wasmasm.FuncImport("wasi_snapshot_preview1", "fd_read", 0),
		wasmasm.FuncImport("wasi_snapshot_preview1", "fd_write", 0),
	}, 2, c.Body())
}
