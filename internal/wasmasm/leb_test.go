package wasmasm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

func TestUlebKnown(t *testing.T) {
	for _, c := range []struct {
		v   uint64
		enc []byte
	}{
		{0, []byte{0x00}},
		{1, []byte{0x01}},
		{63, []byte{0x3f}},
		{64, []byte{0x40}}, // unsigned: bit 6 is no sign
		{127, []byte{0x7f}},
		{128, []byte{0x80, 0x01}},
		{300, []byte{0xac, 0x02}},
		{16383, []byte{0xff, 0x7f}},
		{16384, []byte{0x80, 0x80, 0x01}},
		{624485, []byte{0xe5, 0x8e, 0x26}},
		{math.MaxUint32, []byte{0xff, 0xff, 0xff, 0xff, 0x0f}},
		{math.MaxUint64, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
	} {
		if got := Uleb(c.v); !bytes.Equal(got, c.enc) {
			t.Errorf("Uleb(%d) = % x, want % x", c.v, got, c.enc)
		}
		if v, n, err := DecodeUleb(append(c.enc, 0xaa)); err != nil || v != c.v || n != len(c.enc) {
			t.Errorf("DecodeUleb(% x) = %d, %d, %v", c.enc, v, n, err)
		}
	}
}

func TestSlebKnown(t *testing.T) {
	for _, c := range []struct {
		v   int64
		enc []byte
	}{
		{0, []byte{0x00}},
		{1, []byte{0x01}},
		{-1, []byte{0x7f}},
		{2, []byte{0x02}},
		{-2, []byte{0x7e}},
		{63, []byte{0x3f}},
		{-64, []byte{0x40}},
		{64, []byte{0xc0, 0x00}},  // bit 6 set: a second byte keeps it positive
		{-65, []byte{0xbf, 0x7f}}, // bit 6 clear: a second byte keeps it negative
		{127, []byte{0xff, 0x00}},
		{-127, []byte{0x81, 0x7f}},
		{128, []byte{0x80, 0x01}},
		{-128, []byte{0x80, 0x7f}},
		{-129, []byte{0xff, 0x7e}},
		{8191, []byte{0xff, 0x3f}},
		{-8192, []byte{0x80, 0x40}},
		{8192, []byte{0x80, 0xc0, 0x00}},
		{-8193, []byte{0xff, 0xbf, 0x7f}},
		{-123456, []byte{0xc0, 0xbb, 0x78}},
		{math.MaxInt32, []byte{0xff, 0xff, 0xff, 0xff, 0x07}},
		{math.MinInt32, []byte{0x80, 0x80, 0x80, 0x80, 0x78}},
		{math.MaxInt64, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00}},
		{math.MinInt64, []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x7f}},
		{math.MinInt64 + 1, []byte{0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x7f}},
	} {
		if got := Sleb(c.v); !bytes.Equal(got, c.enc) {
			t.Errorf("Sleb(%d) = % x, want % x", c.v, got, c.enc)
		}
		if v, n, err := DecodeSleb(append(c.enc, 0xaa)); err != nil || v != c.v || n != len(c.enc) {
			t.Errorf("DecodeSleb(% x) = %d, %d, %v", c.enc, v, n, err)
		}
	}
}

// edgeValues are the values either side of every power of two, and their
// negations.
func edgeValues() []int64 {
	vs := []int64{0, math.MaxInt64, math.MinInt64}
	for k := range 63 {
		p := int64(1) << k
		vs = append(vs, p-1, p, p+1, -p+1, -p, -p-1)
	}
	return vs
}

func TestLEBRoundTrip(t *testing.T) {
	vs := edgeValues()
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		vs = append(vs, int64(r.Uint64()), int64(r.Uint64()>>r.IntN(64)), -int64(r.Uint64()>>r.IntN(64)))
	}
	for _, v := range vs {
		u := uint64(v)
		enc := Uleb(u)
		if got, n, err := DecodeUleb(enc); err != nil || got != u || n != len(enc) {
			t.Fatalf("uleb %d: % x decodes to %d, %d, %v", u, enc, got, n, err)
		}
		if want := (bits(u) + 6) / 7; len(enc) != max(want, 1) {
			t.Fatalf("uleb %d: %d bytes, want %d", u, len(enc), max(want, 1))
		}
		if !bytes.Equal(enc, AppendUleb(nil, u)) || !bytes.Equal(AppendUleb([]byte{9}, u)[1:], enc) {
			t.Fatalf("uleb %d: Append disagrees", u)
		}

		enc = Sleb(v)
		if got, n, err := DecodeSleb(enc); err != nil || got != v || n != len(enc) {
			t.Fatalf("sleb %d: % x decodes to %d, %d, %v", v, enc, got, n, err)
		}
		// Fewest bytes: 7 per byte for the bits below the sign, plus the sign.
		sig := bits(uint64(v))
		if v < 0 {
			sig = bits(^uint64(v))
		}
		if want := sig/7 + 1; len(enc) != want {
			t.Fatalf("sleb %d: %d bytes % x, want %d", v, len(enc), enc, want)
		}
		if !bytes.Equal(AppendSleb([]byte{9}, v)[1:], enc) {
			t.Fatalf("sleb %d: Append disagrees", v)
		}
	}
}

func bits(u uint64) int {
	n := 0
	for ; u != 0; u >>= 1 {
		n++
	}
	return n
}

func TestDecodeErrors(t *testing.T) {
	ten := bytes.Repeat([]byte{0x80}, 10)
	nine := func(last byte) []byte { return append(bytes.Repeat([]byte{0x80}, 9), last) } // a tenth byte after nine 0x80
	for _, c := range []struct {
		in         []byte
		uErr, sErr error
		u          uint64
		s          int64
		n          int
	}{
		{in: nil, uErr: ErrTruncated, sErr: ErrTruncated},
		{in: []byte{0x80}, uErr: ErrTruncated, sErr: ErrTruncated},
		{in: ten[1:], uErr: ErrTruncated, sErr: ErrTruncated},
		{in: ten, uErr: ErrOverflow, sErr: ErrOverflow},                   // 10 bytes, still going
		{in: append(nine(0x80), 0), uErr: ErrOverflow, sErr: ErrOverflow}, // 11 bytes
		{in: nine(0x02), uErr: ErrOverflow, sErr: ErrOverflow},            // bit 64
		{in: nine(0x01), u: 1 << 63, sErr: ErrOverflow, n: 10},            // sleb: bit 63 set, not sign-extended
		{in: nine(0x7e), uErr: ErrOverflow, sErr: ErrOverflow},
		{in: nine(0x40), uErr: ErrOverflow, sErr: ErrOverflow},
		{in: nine(0x7f), uErr: ErrOverflow, s: math.MinInt64, n: 10},
		{in: nine(0x00), u: 0, s: 0, n: 10},        // padded zero
		{in: []byte{0x80, 0x00}, u: 0, s: 0, n: 2}, // padded zero
		{in: []byte{0xff, 0x7f}, u: 16383, s: -1, n: 2},
		{in: []byte{0xff, 0xff, 0xff, 0xff, 0x7f}, u: 1<<35 - 1, s: -1, n: 5},
		{in: []byte{0x81, 0x80, 0x00, 0x55}, u: 1, s: 1, n: 3},
	} {
		u, n, err := DecodeUleb(c.in)
		if !errors.Is(err, c.uErr) || (c.uErr == nil && (u != c.u || n != c.n)) || (c.uErr != nil && (u != 0 || n != 0)) {
			t.Errorf("DecodeUleb(% x) = %d, %d, %v; want %d, %d, %v", c.in, u, n, err, c.u, c.n, c.uErr)
		}
		s, n, err := DecodeSleb(c.in)
		if !errors.Is(err, c.sErr) || (c.sErr == nil && (s != c.s || n != c.n)) || (c.sErr != nil && (s != 0 || n != 0)) {
			t.Errorf("DecodeSleb(% x) = %d, %d, %v; want %d, %d, %v", c.in, s, n, err, c.s, c.n, c.sErr)
		}
	}
}

// refDecode decodes LEB128 the long way, with a big integer: the number
// ends at the first byte without the continuation bit, is at most 10 bytes
// long, and must fit in 64 bits (signed or not).
func refDecode(b []byte, signed bool) (*big.Int, int, error) {
	v := new(big.Int)
	for i := 0; ; i++ {
		if i == maxLEB {
			return nil, 0, ErrOverflow
		}
		if i == len(b) {
			return nil, 0, ErrTruncated
		}
		c := b[i]
		v.Or(v, new(big.Int).Lsh(big.NewInt(int64(c&0x7f)), uint(7*i)))
		if c&0x80 != 0 {
			continue
		}
		lo, hi := big.NewInt(0), new(big.Int).SetUint64(math.MaxUint64)
		if signed {
			if c&0x40 != 0 {
				v.Sub(v, new(big.Int).Lsh(big.NewInt(1), uint(7*(i+1))))
			}
			lo, hi = big.NewInt(math.MinInt64), big.NewInt(math.MaxInt64)
		}
		if v.Cmp(lo) < 0 || v.Cmp(hi) > 0 {
			return nil, 0, ErrOverflow
		}
		return v, i + 1, nil
	}
}

func TestDecodeAgreesWithReference(t *testing.T) {
	// Every input of up to two bytes, and ten-byte ones with every last byte.
	var ins [][]byte
	for a := range 256 {
		ins = append(ins, []byte{byte(a)})
		for b := range 256 {
			ins = append(ins, []byte{byte(a), byte(b)})
		}
		ins = append(ins, append(bytes.Repeat([]byte{0xff}, 9), byte(a)), append(bytes.Repeat([]byte{0x80}, 9), byte(a)))
	}
	for _, in := range ins {
		checkUleb(t, in)
		checkSleb(t, in)
	}
}

func checkUleb(t *testing.T, in []byte) {
	t.Helper()
	v, n, err := DecodeUleb(in)
	want, wn, werr := refDecode(in, false)
	if err != werr || n != wn || (err == nil && want.Uint64() != v) {
		t.Fatalf("DecodeUleb(% x) = %d, %d, %v; reference %v, %d, %v", in, v, n, err, want, wn, werr)
	}
	// encoding/binary reads the same numbers (it tells a tenth byte that
	// goes on from a truncated input only when an eleventh follows).
	bv, bn := binary.Uvarint(in)
	if (err == nil) != (bn > 0) || (bn > 0 && (bv != v || bn != n)) {
		t.Fatalf("DecodeUleb(% x) = %d, %d, %v; binary.Uvarint %d, %d", in, v, n, err, bv, bn)
	}
	if err != nil {
		return
	}
	enc := Uleb(v)
	if len(enc) > n {
		t.Fatalf("% x: %d re-encodes longer, % x", in[:n], v, enc)
	}
	if len(enc) == n && !bytes.Equal(enc, in[:n]) {
		t.Fatalf("% x: %d re-encodes as % x", in[:n], v, enc)
	}
}

func checkSleb(t *testing.T, in []byte) {
	t.Helper()
	v, n, err := DecodeSleb(in)
	want, wn, werr := refDecode(in, true)
	if err != werr || n != wn || (err == nil && want.Int64() != v) {
		t.Fatalf("DecodeSleb(% x) = %d, %d, %v; reference %v, %d, %v", in, v, n, err, want, wn, werr)
	}
	if err != nil {
		return
	}
	enc := Sleb(v)
	if len(enc) > n {
		t.Fatalf("% x: %d re-encodes longer, % x", in[:n], v, enc)
	}
	if len(enc) == n && !bytes.Equal(enc, in[:n]) {
		t.Fatalf("% x: %d re-encodes as % x", in[:n], v, enc)
	}
}

func FuzzDecodeUleb(f *testing.F) {
	for _, v := range edgeValues() {
		f.Add(Uleb(uint64(v)))
	}
	f.Add([]byte{0x80, 0x00})
	f.Add(bytes.Repeat([]byte{0x80}, 11))
	f.Fuzz(checkUleb)
}

func FuzzDecodeSleb(f *testing.F) {
	for _, v := range edgeValues() {
		f.Add(Sleb(v))
	}
	f.Add([]byte{0xff, 0x7f})
	f.Add(append(bytes.Repeat([]byte{0x80}, 9), 0x40))
	f.Fuzz(checkSleb)
}
