package main

import (
	"strconv"

	w "github.com/aspen-market/aspen/internal/wasmasm"
)

// The per-task figures (start-up, latency, throughput) need a module whose
// own cost is negligible or known: the Go-built examples are 2 MB and
// spend milliseconds in the Go runtime's start-up. spinEcho is assembled
// here by hand (about 300 bytes):
//
//	_start: read stdin (up to 4 KiB); parse a leading decimal number N;
//	        spin N iterations of an integer loop; write stdin to stdout.
//
// So "0 task-17" is a tiny echo job and "700000 task-17" one that computes
// for about a millisecond, with the same output shape.

// spinEchoWasm returns the module described above.
func spinEchoWasm() []byte {
	const (
		buf     = 64   // input buffer
		bufSize = 4096 // bytes of input read at most
		// locals
		total, i, n, b, acc = 0, 1, 2, 3, 4
		fdRead, fdWrite     = 0, 1
	)
	var c w.Code
	// Read loop: iovec at 0 = {buf + total, bufSize - total}; nread at 8.
	c.Block().Loop()
	c.I32Const(0).LocalGet(total).I32Const(buf).Op(w.OpI32Add).I32Store(0)
	c.I32Const(4).I32Const(bufSize).LocalGet(total).Op(w.OpI32Sub).I32Store(0)
	c.I32Const(0).I32Const(0).I32Const(1).I32Const(8).Call(fdRead).BrIf(1) // errno ≠ 0: stop
	c.I32Const(8).I32Load(0).LocalTee(b).Op(w.OpI32Eqz).BrIf(1)            // EOF: stop
	c.LocalGet(total).LocalGet(b).Op(w.OpI32Add).LocalTee(total).I32Const(bufSize).Op(w.OpI32LtU).BrIf(0)
	c.End().End()
	// Parse a leading decimal number into n.
	c.Block().Loop()
	c.LocalGet(i).LocalGet(total).Op(w.OpI32GeU).BrIf(1)
	c.LocalGet(i).I32Load8U(buf).I32Const('0').Op(w.OpI32Sub).LocalTee(b).I32Const(9).Op(w.OpI32GtU).BrIf(1)
	c.LocalGet(n).I32Const(10).Op(w.OpI32Mul).LocalGet(b).Op(w.OpI32Add).LocalSet(n)
	c.LocalGet(i).I32Const(1).Op(w.OpI32Add).LocalSet(i)
	c.Br(0)
	c.End().End()
	// Spin: acc = acc*31 + n, n times.
	c.Block().Loop()
	c.LocalGet(n).Op(w.OpI32Eqz).BrIf(1)
	c.LocalGet(acc).I32Const(31).Op(w.OpI32Mul).LocalGet(n).Op(w.OpI32Add).LocalSet(acc)
	c.LocalGet(n).I32Const(1).Op(w.OpI32Sub).LocalSet(n)
	c.Br(0)
	c.End().End()
	c.I32Const(16).LocalGet(acc).I32Store(0) // keep acc observable to the engine
	// Echo: fd_write(1, iovec{buf, total}).
	c.I32Const(0).I32Const(buf).I32Store(0)
	c.I32Const(4).LocalGet(total).I32Store(0)
	c.I32Const(1).I32Const(0).I32Const(1).I32Const(8).Call(fdWrite).Op(w.OpDrop)

	fdIO := w.FuncType{Params: []byte{w.I32, w.I32, w.I32, w.I32}, Results: []byte{w.I32}} // fd_read, fd_write
	return w.Command([]w.FuncType{fdIO}, []w.Import{
		w.FuncImport("wasi_snapshot_preview1", "fd_read", 0),
		w.FuncImport("wasi_snapshot_preview1", "fd_write", 0),
	}, 1, c.Body(w.Local{Count: 5, Type: w.I32}))
}

// spinInput is the input that spins n iterations and echoes tag.
func spinInput(n int, tag string) []byte {
	return []byte(strconv.Itoa(n) + " " + tag)
}
