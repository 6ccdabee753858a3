package protocol

import (
	"encoding/binary"
	"fmt"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// The canonical encoding: every field in declaration order; integers
// fixed-width big-endian; byte strings and strings as a u32 length then the
// bytes; lists as a u32 count then the elements; booleans one byte 0 or 1;
// CIDs and peer IDs as byte strings holding their binary form. A decoder
// refuses trailing bytes, non-0/1 booleans, lengths past the limits and CIDs
// or peer IDs that do not re-encode to the same bytes, so every message has
// exactly one encoding and a signature covers exact bytes.

type writer struct{ b []byte }

func (w *writer) u8(v uint8)   { w.b = append(w.b, v) }
func (w *writer) u16(v uint16) { w.b = binary.BigEndian.AppendUint16(w.b, v) }
func (w *writer) u32(v uint32) { w.b = binary.BigEndian.AppendUint32(w.b, v) }
func (w *writer) u64(v uint64) { w.b = binary.BigEndian.AppendUint64(w.b, v) }
func (w *writer) i64(v int64)  { w.u64(uint64(v)) }
func (w *writer) boolean(v bool) {
	if v {
		w.u8(1)
	} else {
		w.u8(0)
	}
}
func (w *writer) bytes(v []byte) { w.u32(uint32(len(v))); w.b = append(w.b, v...) }
func (w *writer) str(v string)   { w.u32(uint32(len(v))); w.b = append(w.b, v...) }
func (w *writer) cid(c cid.Cid) {
	if !c.Defined() {
		w.u32(0)
		return
	}
	w.str(c.KeyString())
}
func (w *writer) peer(p peer.ID)  { w.str(string(p)) }
func (w *writer) id16(v [16]byte) { w.b = append(w.b, v[:]...) }

type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
	}
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.fail("truncated: need %d bytes, have %d", n, len(r.b))
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() uint8 {
	v := r.take(1)
	if v == nil {
		return 0
	}
	return v[0]
}
func (r *reader) u16() uint16 {
	v := r.take(2)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint16(v)
}
func (r *reader) u32() uint32 {
	v := r.take(4)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint32(v)
}
func (r *reader) u64() uint64 {
	v := r.take(8)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}
func (r *reader) i64() int64 { return int64(r.u64()) }
func (r *reader) boolean() bool {
	switch v := r.u8(); v {
	case 0:
		return false
	case 1:
		return true
	default:
		r.fail("boolean byte %d", v)
		return false
	}
}

// bytes reads a length-prefixed byte string of at most max bytes. The
// result aliases the input.
func (r *reader) bytes(max int) []byte {
	n := r.u32()
	if r.err != nil {
		return nil
	}
	if int64(n) > int64(max) {
		r.fail("field of %d bytes exceeds limit %d", n, max)
		return nil
	}
	return r.take(int(n))
}

func (r *reader) str(max int) string { return string(r.bytes(max)) }

func (r *reader) cid() cid.Cid {
	b := r.bytes(MaxCIDBytes)
	if r.err != nil || len(b) == 0 {
		return cid.Undef
	}
	n, c, err := cid.CidFromBytes(b)
	if err != nil || n != len(b) {
		r.fail("bad CID")
		return cid.Undef
	}
	if c.KeyString() != string(b) {
		r.fail("non-canonical CID")
		return cid.Undef
	}
	if err := CheckBlobCID(c); err != nil {
		r.fail("%v", err)
		return cid.Undef
	}
	return c
}

func (r *reader) peer() peer.ID {
	b := r.bytes(MaxPeerIDBytes)
	if r.err != nil {
		return ""
	}
	if len(b) == 0 {
		return ""
	}
	id, err := peer.IDFromBytes(b)
	if err != nil {
		r.fail("bad peer ID: %v", err)
		return ""
	}
	return id
}

func (r *reader) id16() (v [16]byte) {
	b := r.take(16)
	copy(v[:], b)
	return v
}

// count reads a list length and checks it against max.
func (r *reader) count(max int) int {
	n := r.u32()
	if r.err != nil {
		return 0
	}
	if int64(n) > int64(max) {
		r.fail("list of %d elements exceeds limit %d", n, max)
		return 0
	}
	// Each element needs at least one byte; refuse counts the input cannot hold.
	if int(n) > len(r.b) {
		r.fail("list of %d elements in %d bytes", n, len(r.b))
		return 0
	}
	return int(n)
}

func (r *reader) done() error {
	if r.err == nil && len(r.b) != 0 {
		r.fail("%d trailing bytes", len(r.b))
	}
	return r.err
}
