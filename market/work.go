package market

import (
	"math"
	"math/bits"

	"github.com/aspen-market/aspen/protocol"
)

// Work is an amount of computation, the paper's L = speed × time, in
// milli-standard-unit microseconds (Speed × microseconds), held exactly as
// an unsigned 128-bit integer (Hi·2⁶⁴ + Lo): 2 h at speed 1000 000.0 does
// not fit in 64 bits. One standard-unit hour is 3.6e12.
type Work struct{ Hi, Lo uint64 }

// WorkOf returns L = s × t for a speed and an execution time in
// microseconds; a negative time counts as zero.
func WorkOf(s protocol.Speed, micros int64) Work {
	if micros <= 0 {
		return Work{}
	}
	hi, lo := bits.Mul64(uint64(s), uint64(micros))
	return Work{hi, lo}
}

// Cmp compares w and v: -1, 0 or +1.
func (w Work) Cmp(v Work) int {
	switch {
	case w.Hi < v.Hi:
		return -1
	case w.Hi > v.Hi:
		return 1
	case w.Lo < v.Lo:
		return -1
	case w.Lo > v.Lo:
		return 1
	}
	return 0
}

// mul returns w × m, saturating at the 128-bit maximum.
func (w Work) mul(m uint64) Work {
	hiLo, lo := bits.Mul64(w.Lo, m)
	hiHi, hiLo2 := bits.Mul64(w.Hi, m)
	hi, carry := bits.Add64(hiLo2, hiLo, 0)
	if hiHi != 0 || carry != 0 {
		return Work{math.MaxUint64, math.MaxUint64}
	}
	return Work{hi, lo}
}

// sub returns w − v, or zero if v ≥ w.
func (w Work) sub(v Work) Work {
	if w.Cmp(v) <= 0 {
		return Work{}
	}
	lo, borrow := bits.Sub64(w.Lo, v.Lo, 0)
	hi, _ := bits.Sub64(w.Hi, v.Hi, borrow)
	return Work{hi, lo}
}

// div returns floor(w / d), saturating at math.MaxUint64; d must be > 0.
func (w Work) div(d uint64) uint64 {
	if w.Hi >= d {
		return math.MaxUint64
	}
	q, _ := bits.Div64(w.Hi, w.Lo, d)
	return q
}

// mulDiv returns floor(a × b / d) exactly, saturating at math.MaxUint64;
// d must be > 0.
func mulDiv(a, b, d uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return Work{hi, lo}.div(d)
}

// MulDiv returns floor(a × b / d) exactly (128-bit intermediate),
// saturating at math.MaxUint64; d must be > 0.
func MulDiv(a, b, d uint64) uint64 { return mulDiv(a, b, d) }
