package main

import (
	"encoding/binary"
	"strconv"
)

// The per-task figures (start-up, latency, throughput) need a module whose
// own cost is negligible or known: the Go-built examples are 2 MB and
// spend milliseconds in the Go runtime's start-up. spinEcho is assembled
// here by hand (about 200 bytes):
//
//	_start: read stdin (up to 4 KiB); parse a leading decimal number N;
//	        spin N iterations of an integer loop; write stdin to stdout.
//
// So "0 task-17" is a tiny echo job and "700000 task-17" one that computes
// for about a millisecond, with the same output shape.

const (
	wI32 = 0x7f

	opBlock   = 0x02
	opLoop    = 0x03
	opEnd     = 0x0b
	opBr      = 0x0c
	opBrIf    = 0x0d
	opCall    = 0x10
	opDrop    = 0x1a
	opLocalG  = 0x20
	opLocalS  = 0x21
	opLocalT  = 0x22
	opI32Load = 0x28
	opLoad8U  = 0x2d
	opStore   = 0x36
	opConst   = 0x41
	opEqz     = 0x45
	opLtU     = 0x49
	opGtU     = 0x4b
	opGeU     = 0x4f
	opAdd     = 0x6a
	opSub     = 0x6b
	opMul     = 0x6c
	blockVoid = 0x40
)

// asm accumulates a function body.
type asm []byte

func (a *asm) op(b ...byte) *asm { *a = append(*a, b...); return a }
func (a *asm) i32(v int32) *asm  { return a.op(opConst).op(sleb(int64(v))...) }
func (a *asm) get(i uint32) *asm { return a.op(opLocalG).op(uleb(uint64(i))...) }
func (a *asm) set(i uint32) *asm { return a.op(opLocalS).op(uleb(uint64(i))...) }
func (a *asm) tee(i uint32) *asm { return a.op(opLocalT).op(uleb(uint64(i))...) }
func (a *asm) call(f uint32) *asm {
	return a.op(opCall).op(uleb(uint64(f))...)
}
func (a *asm) brIf(d uint32) *asm { return a.op(opBrIf).op(uleb(uint64(d))...) }
func (a *asm) br(d uint32) *asm   { return a.op(opBr).op(uleb(uint64(d))...) }

// load/store with natural alignment and an offset.
func (a *asm) load(off uint32) *asm  { return a.op(opI32Load, 2).op(uleb(uint64(off))...) }
func (a *asm) load8(off uint32) *asm { return a.op(opLoad8U, 0).op(uleb(uint64(off))...) }
func (a *asm) store(off uint32) *asm { return a.op(opStore, 2).op(uleb(uint64(off))...) }
func (a *asm) blockLoop() *asm       { return a.op(opBlock, blockVoid, opLoop, blockVoid) }
func (a *asm) endBlockLoop() *asm    { return a.op(opEnd, opEnd) }
func uleb(v uint64) []byte           { return binary.AppendUvarint(nil, v) }
func wname(s string) []byte          { return append(uleb(uint64(len(s))), s...) }
func section(id byte, body []byte) []byte {
	return append(append([]byte{id}, uleb(uint64(len(body)))...), body...)
}

func sleb(v int64) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// spinEchoWasm returns the module described above.
func spinEchoWasm() []byte {
	const (
		buf     = 64   // input buffer
		bufSize = 4096 // bytes of input read at most
		// locals
		total, i, n, b, acc = 0, 1, 2, 3, 4
		fdRead, fdWrite     = 0, 1
	)
	var c asm
	// Read loop: iovec at 0 = {buf + total, bufSize - total}; nread at 8.
	c.blockLoop()
	c.i32(0).get(total).i32(buf).op(opAdd).store(0)
	c.i32(4).i32(bufSize).get(total).op(opSub).store(0)
	c.i32(0).i32(0).i32(1).i32(8).call(fdRead).brIf(1) // errno ≠ 0: stop
	c.i32(8).load(0).tee(b).op(opEqz).brIf(1)          // EOF: stop
	c.get(total).get(b).op(opAdd).tee(total).i32(bufSize).op(opLtU).brIf(0)
	c.endBlockLoop()
	// Parse a leading decimal number into n.
	c.blockLoop()
	c.get(i).get(total).op(opGeU).brIf(1)
	c.get(i).load8(buf).i32('0').op(opSub).tee(b).i32(9).op(opGtU).brIf(1)
	c.get(n).i32(10).op(opMul).get(b).op(opAdd).set(n)
	c.get(i).i32(1).op(opAdd).set(i)
	c.br(0)
	c.endBlockLoop()
	// Spin: acc = acc*31 + n, n times.
	c.blockLoop()
	c.get(n).op(opEqz).brIf(1)
	c.get(acc).i32(31).op(opMul).get(n).op(opAdd).set(acc)
	c.get(n).i32(1).op(opSub).set(n)
	c.br(0)
	c.endBlockLoop()
	c.i32(16).get(acc).store(0) // keep acc observable to the engine
	// Echo: fd_write(1, iovec{buf, total}).
	c.i32(0).i32(buf).store(0)
	c.i32(4).get(total).store(0)
	c.i32(1).i32(0).i32(1).i32(8).call(fdWrite).op(opDrop)
	c.op(opEnd)
	body := append([]byte{1, 5, wI32}, c...) // 5 i32 locals

	ioType := []byte{0x60, 4, wI32, wI32, wI32, wI32, 1, wI32}
	voidType := []byte{0x60, 0, 0}
	imp := func(name string) []byte {
		return append(append(wname("wasi_snapshot_preview1"), wname(name)...), 0, 0) // func of type 0
	}
	out := []byte("\x00asm\x01\x00\x00\x00")
	out = append(out, section(1, append([]byte{2}, append(ioType, voidType...)...))...)
	out = append(out, section(2, append(append([]byte{2}, imp("fd_read")...), imp("fd_write")...))...)
	out = append(out, section(3, []byte{1, 1})...)    // one function of type 1
	out = append(out, section(5, []byte{1, 0, 1})...) // one memory, min 1 page
	exports := append(append([]byte{2}, wname("_start")...), 0, 2)
	exports = append(append(exports, wname("memory")...), 2, 0)
	out = append(out, section(7, exports)...)
	code := append(uleb(uint64(len(body))), body...)
	out = append(out, section(10, append([]byte{1}, code...))...)
	return out
}

// spinInput is the input that spins n iterations and echoes tag.
func spinInput(n int, tag string) []byte {
	return []byte(strconv.Itoa(n) + " " + tag)
}
