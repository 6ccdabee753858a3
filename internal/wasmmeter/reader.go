package wasmmeter

import (
	"encoding/binary"
	"fmt"
)

// Value types.
const (
	i32  = 0x7f
	i64  = 0x7e
	f32  = 0x7d
	f64  = 0x7c
	v128 = 0x7b
)

// reader reads the binary format; the first error sticks and later reads
// return zero values.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(format string, a ...any) {
	if r.err == nil {
		r.err = fmt.Errorf(format, a...)
	}
	r.b = nil
}

func (r *reader) byte() byte {
	if len(r.b) == 0 {
		r.fail("unexpected end")
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// u32 reads an unsigned LEB128 of at most 32 bits (at most 5 bytes).
func (r *reader) u32(what string) uint32 {
	v, n := uleb32(r.b)
	if n <= 0 {
		r.fail("bad %s", what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

// uleb32 decodes an unsigned LEB128 of at most 32 bits; n ≤ 0 if it is
// malformed.
func uleb32(b []byte) (v uint32, n int) {
	if len(b) > 0 && b[0] < 0x80 { // the common case
		return uint32(b[0]), 1
	}
	x, n := binary.Uvarint(b)
	if n <= 0 || n > 5 || x > 1<<32-1 {
		return 0, -1
	}
	return uint32(x), n
}

// slebLen returns the length of a signed LEB128 of at most max bytes; 0 if
// it is malformed.
func slebLen(b []byte, max int) int {
	for i := 0; i < max && i < len(b); i++ {
		if b[i]&0x80 == 0 {
			return i + 1
		}
	}
	return 0
}

func (r *reader) take(n uint32, what string) []byte {
	if r.err != nil {
		return nil
	}
	if uint64(n) > uint64(len(r.b)) {
		r.fail("%s of %d bytes runs past the end", what, n)
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// count reads a vector length and checks it against the bytes left, each
// entry taking at least minSize bytes.
func (r *reader) count(what string, minSize int) int {
	n := r.u32(what + " count")
	if r.err != nil {
		return 0
	}
	if uint64(n)*uint64(minSize) > uint64(len(r.b)) {
		r.fail("%d %s in %d bytes", n, what, len(r.b))
		return 0
	}
	return int(n)
}

func (r *reader) name() string { return string(r.take(r.u32("name length"), "name")) }

// valtype reads a value or reference type and returns its first byte.
func (r *reader) valtype() byte {
	b := r.byte()
	if b == 0x63 || b == 0x64 { // (ref null? heaptype)
		if n := slebLen(r.b, 5); n > 0 {
			r.b = r.b[n:]
		} else {
			r.fail("bad heap type")
		}
	}
	return b
}

func (r *reader) limits() {
	flag := r.byte()
	if flag > 3 && r.err == nil {
		r.fail("unknown limits flags 0x%x", flag)
		return
	}
	r.u32("minimum")
	if flag&1 != 0 {
		r.u32("maximum")
	}
}

// constExpr skips a constant expression up to and including its end,
// refusing a global.get of an index at or past globals.
func (r *reader) constExpr(globals uint32) {
	for r.err == nil {
		switch op := r.byte(); op {
		case 0x0b: // end
			return
		case 0x41: // i32.const
			r.sleb(5)
		case 0x42: // i64.const
			r.sleb(10)
		case 0x43:
			r.take(4, "f32 constant")
		case 0x44:
			r.take(8, "f64 constant")
		case 0x23: // global.get
			if g := r.u32("global index"); g >= globals && r.err == nil {
				r.fail("global index %d out of range in a constant expression", g)
			}
		case 0xd2: // ref.func
			r.u32("function index")
		case 0xd0: // ref.null
			r.sleb(5)
		case 0x6a, 0x6b, 0x6c, 0x7c, 0x7d, 0x7e: // extended constant arithmetic
		case 0xfd: // v128.const
			if sub := r.u32("vector opcode"); sub != 12 && r.err == nil {
				r.fail("instruction 0xfd %d in a constant expression", sub)
			}
			r.take(16, "v128 constant")
		default:
			if r.err == nil {
				r.fail("instruction 0x%x in a constant expression", op)
			}
		}
	}
}

func (r *reader) sleb(max int) {
	n := slebLen(r.b, max)
	if n == 0 {
		r.fail("bad signed integer")
		return
	}
	r.b = r.b[n:]
}
