package wasmasm

import (
	"encoding/binary"
	"errors"
)

// Errors of [DecodeUleb] and [DecodeSleb].
var (
	ErrTruncated = errors.New("wasmasm: LEB128 number runs past the end of the input")
	ErrOverflow  = errors.New("wasmasm: LEB128 number does not fit in 64 bits")
)

// maxLEB is the most bytes a 64-bit number takes in LEB128.
const maxLEB = 10

// Uleb returns v in unsigned LEB128, in the fewest bytes.
func Uleb(v uint64) []byte { return AppendUleb(nil, v) }

// AppendUleb appends v in unsigned LEB128, in the fewest bytes, to b.
func AppendUleb(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }

// Sleb returns v in signed LEB128, in the fewest bytes.
func Sleb(v int64) []byte { return AppendSleb(nil, v) }

// AppendSleb appends v in signed LEB128, in the fewest bytes, to b.
func AppendSleb(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7 // arithmetic: a negative v ends at -1
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// DecodeUleb reads an unsigned LEB128 number at the start of b and returns
// it and the number of bytes it took. Padded encodings are read (0x80 0x00
// is 0), as the binary format allows; a number of more than 10 bytes, or
// whose tenth byte has bits beyond the 64th, is ErrOverflow.
func DecodeUleb(b []byte) (uint64, int, error) {
	var v uint64
	for i := range maxLEB {
		if i == len(b) {
			return 0, 0, ErrTruncated
		}
		c := b[i]
		if i == maxLEB-1 && c > 1 {
			return 0, 0, ErrOverflow
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			return v, i + 1, nil
		}
	}
	panic("unreachable") // the tenth byte either ends the number or overflows
}

// DecodeSleb reads a signed LEB128 number at the start of b and returns it
// and the number of bytes it took. Padded encodings are read (0xff 0x7f is
// -1); a number of more than 10 bytes, or whose tenth byte is not the sign
// extension of bit 63 (0x00 or 0x7f), is ErrOverflow.
func DecodeSleb(b []byte) (int64, int, error) {
	var v int64
	for i := range maxLEB {
		if i == len(b) {
			return 0, 0, ErrTruncated
		}
		c := b[i]
		if i == maxLEB-1 && c != 0 && c != 0x7f {
			return 0, 0, ErrOverflow
		}
		v |= int64(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			if shift := 7 * (i + 1); shift < 64 && c&0x40 != 0 {
				v |= -1 << shift // sign-extend
			}
			return v, i + 1, nil
		}
	}
	panic("unreachable") // the tenth byte either ends the number or overflows
}
