package integration

import (
	"bytes"
	"encoding/binary"
)

// A tiny WebAssembly assembler for the hostile modules the consumer is
// given: one that loops forever, one that allocates without end, one that
// imports what the sandbox does not give, and an echo (stdin to stdout) used
// to make results larger than the inline limit.

const i32 = 0x7f

type wfunc struct{ params, results []byte }

type wimport struct {
	module, name string
	typeIdx      uint32
}

type wexport struct {
	name string
	kind byte // 0 func, 2 memory
	idx  uint32
}

type wmodule struct {
	types   []wfunc
	imports []wimport // functions only
	funcs   []uint32  // type index of each defined function
	pages   uint32    // initial memory pages (0: no memory)
	exports []wexport
	codes   [][]byte // body of each defined function (locals vector + code + end)
}

func uleb(v uint64) []byte { return binary.AppendUvarint(nil, v) }

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

func vec(items ...[]byte) []byte {
	b := uleb(uint64(len(items)))
	for _, it := range items {
		b = append(b, it...)
	}
	return b
}

func wname(s string) []byte { return append(uleb(uint64(len(s))), s...) }

func (m wmodule) bytes() []byte {
	out := []byte("\x00asm\x01\x00\x00\x00")
	section := func(id byte, body []byte) {
		out = append(out, id)
		out = append(out, uleb(uint64(len(body)))...)
		out = append(out, body...)
	}
	split := func(b []byte) [][]byte {
		var o [][]byte
		for i := range b {
			o = append(o, b[i:i+1])
		}
		return o
	}
	var items [][]byte
	for _, f := range m.types {
		items = append(items, bytes.Join([][]byte{{0x60}, vec(split(f.params)...), vec(split(f.results)...)}, nil))
	}
	section(1, vec(items...))
	if len(m.imports) > 0 {
		items = nil
		for _, im := range m.imports {
			items = append(items, bytes.Join([][]byte{wname(im.module), wname(im.name), {0}, uleb(uint64(im.typeIdx))}, nil))
		}
		section(2, vec(items...))
	}
	items = nil
	for _, f := range m.funcs {
		items = append(items, uleb(uint64(f)))
	}
	section(3, vec(items...))
	if m.pages > 0 {
		section(5, vec(append([]byte{0}, uleb(uint64(m.pages))...)))
	}
	items = nil
	for _, e := range m.exports {
		items = append(items, bytes.Join([][]byte{wname(e.name), {e.kind}, uleb(uint64(e.idx))}, nil))
	}
	section(7, vec(items...))
	items = nil
	for _, c := range m.codes {
		items = append(items, append(uleb(uint64(len(c))), c...))
	}
	section(10, vec(items...))
	return out
}

func code(ops ...[]byte) []byte {
	b := []byte{0} // no locals
	for _, op := range ops {
		b = append(b, op...)
	}
	return append(b, 0x0b)
}

func i32const(v int32) []byte { return append([]byte{0x41}, sleb(int64(v))...) }
func call(f uint32) []byte    { return append([]byte{0x10}, uleb(uint64(f))...) }

var (
	opDrop     = []byte{0x1a}
	opI32Store = []byte{0x36, 0x02, 0x00} // align 4, offset 0
	opI32Load  = []byte{0x28, 0x02, 0x00}
)

// startOnly is a module whose _start runs body, with pages of memory.
func startOnly(pages uint32, body []byte) []byte {
	return wmodule{
		types:   []wfunc{{}},
		funcs:   []uint32{0},
		pages:   pages,
		exports: []wexport{{"_start", 0, 0}, {"memory", 2, 0}},
		codes:   [][]byte{body},
	}.bytes()
}

// loopForever never returns: loop br 0 end.
func loopForever() []byte {
	return startOnly(1, code([]byte{0x03, 0x40, 0x0c, 0x00, 0x0b}))
}

// allocForever grows its memory 16 pages at a time until growing fails,
// then traps (unreachable) — under a memory cap the sandbox stops it first.
func allocForever() []byte {
	return startOnly(1, code(
		[]byte{0x03, 0x40},               // loop
		i32const(16), []byte{0x40, 0x00}, // memory.grow
		i32const(-1), []byte{0x47}, // i32.ne
		[]byte{0x0d, 0x00}, // br_if 0
		[]byte{0x0b},       // end
		[]byte{0x00},       // unreachable
	))
}

// missingImport imports env.steal_cycles, which no sandbox provides.
func missingImport() []byte {
	return wmodule{
		types:   []wfunc{{}},
		imports: []wimport{{"env", "steal_cycles", 0}},
		funcs:   []uint32{0},
		pages:   1,
		exports: []wexport{{"_start", 0, 1}, {"memory", 2, 0}},
		codes:   [][]byte{code(call(0))},
	}.bytes()
}

// echo copies up to 64 KiB of stdin to stdout with one fd_read and one
// fd_write.
func echo() []byte {
	tIO := wfunc{[]byte{i32, i32, i32, i32}, []byte{i32}}
	return wmodule{
		types:   []wfunc{tIO, {}},
		imports: []wimport{{"wasi_snapshot_preview1", "fd_read", 0}, {"wasi_snapshot_preview1", "fd_write", 0}},
		funcs:   []uint32{1},
		pages:   2,
		exports: []wexport{{"_start", 0, 2}, {"memory", 2, 0}},
		codes: [][]byte{code(
			i32const(0), i32const(1024), opI32Store, // iov.buf = 1024
			i32const(4), i32const(65536), opI32Store, // iov.len = 64 KiB
			i32const(0), i32const(0), i32const(1), i32const(16), call(0), opDrop, // fd_read(0, iov, 1, &n)
			i32const(4), i32const(16), opI32Load, opI32Store, // iov.len = n
			i32const(1), i32const(0), i32const(1), i32const(24), call(1), opDrop, // fd_write(1, iov, 1, &m)
		)},
	}.bytes()
}
