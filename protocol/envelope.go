package protocol

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// An envelope is how every message travels: on gossip topics and as stream
// frames. Its encoding is
//
//	u8 version | u8 type | bytes signer | bytes body | bytes signature
//
// and the signature is the signer's libp2p key (ed25519) over
//
//	"aspen/v1 envelope\x00" | u8 version | u8 type | bytes signer | bytes body
//
// i.e. over the exact bytes of everything before the signature field,
// prefixed with a domain-separation string so an Aspen signature can never
// be replayed as anything else.
type Envelope struct {
	Type   MsgType
	Signer peer.ID
	Body   []byte
	Sig    []byte
}

const sigDomain = "aspen/v1 envelope\x00"

// Encode returns the canonical bytes of a message body.
func Encode(m Message) []byte {
	w := writer{b: make([]byte, 0, 256)}
	m.encode(&w)
	return w.b
}

// Decode parses a message body of m's type into m. It refuses trailing
// bytes and anything past the limits.
func Decode(b []byte, m Message) error {
	r := reader{b: b}
	m.decode(&r)
	return r.done()
}

// Seal encodes m, signs it with key and returns the envelope bytes.
func Seal(key crypto.PrivKey, m Message) ([]byte, error) {
	signer, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("protocol: signer id: %w", err)
	}
	w := writer{b: make([]byte, 0, 512)}
	w.u8(Version)
	w.u8(uint8(m.Type()))
	w.peer(signer)
	bodyStart := len(w.b)
	w.u32(0) // body length, patched below
	m.encode(&w)
	binary.BigEndian.PutUint32(w.b[bodyStart:], uint32(len(w.b)-bodyStart-4))
	sig, err := key.Sign(signedBytes(w.b))
	if err != nil {
		return nil, fmt.Errorf("protocol: sign: %w", err)
	}
	w.bytes(sig)
	return w.b, nil
}

func signedBytes(prefix []byte) []byte {
	out := make([]byte, 0, len(sigDomain)+len(prefix))
	out = append(out, sigDomain...)
	return append(out, prefix...)
}

// Open parses envelope bytes and verifies the signature against the
// signer's public key (extracted from its peer ID). It does not decode the
// body; use Envelope.Decode or OpenAs.
func Open(b []byte) (*Envelope, error) {
	if len(b) > MaxMessageSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(b))
	}
	r := reader{b: b}
	v := r.u8()
	if r.err == nil && v != Version {
		return nil, fmt.Errorf("%w: %d", ErrBadVersion, v)
	}
	e := &Envelope{}
	e.Type = MsgType(r.u8())
	e.Signer = r.peer()
	e.Body = r.bytes(MaxMessageSize)
	signedLen := len(b) - len(r.b)
	e.Sig = r.bytes(MaxSigBytes)
	if err := r.done(); err != nil {
		return nil, err
	}
	if e.Signer == "" {
		return nil, fmt.Errorf("%w: no signer", ErrMalformed)
	}
	pub, err := e.Signer.ExtractPublicKey()
	if err != nil {
		return nil, fmt.Errorf("%w: signer %s has no embedded key: %v", ErrBadSignature, e.Signer, err)
	}
	ok, err := pub.Verify(signedBytes(b[:signedLen]), e.Sig)
	if err != nil || !ok {
		return nil, fmt.Errorf("%w: %s from %s", ErrBadSignature, e.Type, e.Signer)
	}
	return e, nil
}

// Decode parses the envelope's body into m, which must be of the
// envelope's type.
func (e *Envelope) Decode(m Message) error {
	if m.Type() != e.Type {
		return fmt.Errorf("%w: got %s, want %s", ErrWrongType, e.Type, m.Type())
	}
	if err := Decode(e.Body, m); err != nil {
		return fmt.Errorf("%s: %w", e.Type, err)
	}
	return nil
}

// OpenAs opens envelope bytes, checks the signature and decodes the body
// into m. It returns the signer.
func OpenAs(b []byte, m Message) (peer.ID, error) {
	e, err := Open(b)
	if err != nil {
		return "", err
	}
	if err := e.Decode(m); err != nil {
		return "", err
	}
	return e.Signer, nil
}

// WriteFrame writes one length-prefixed frame (u32 big-endian length, then
// the bytes).
func WriteFrame(w io.Writer, b []byte) error {
	if len(b) > MaxMessageSize {
		return fmt.Errorf("%w: frame of %d bytes", ErrTooLarge, len(b))
	}
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(b)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(b)
	return err
}

// ReadFrame reads one frame of at most max bytes.
func ReadFrame(r io.Reader, max int) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if int64(n) > int64(max) {
		return nil, fmt.Errorf("%w: frame of %d bytes, limit %d", ErrTooLarge, n, max)
	}
	// The buffer grows as the bytes arrive (64 KiB, then doubling): a peer
	// that announces a 4 MiB frame on each of many streams and then sends
	// nothing holds 64 KiB per stream, not 4 MiB.
	b := make([]byte, min(n, frameStart))
	for got := 0; ; {
		k, err := io.ReadFull(r, b[got:])
		if got += k; err != nil {
			return nil, fmt.Errorf("%w: truncated frame: %v", ErrMalformed, err)
		}
		if got == int(n) {
			return b, nil
		}
		b = append(b, make([]byte, min(int(n)-got, got))...)
	}
}

// frameStart is the buffer ReadFrame allocates before a frame's bytes
// arrive.
const frameStart = 64 << 10

// NewID returns a fresh random ID.
func NewID() ID {
	var id ID
	if _, err := rand.Read(id[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return id
}

// BlobRequest asks a peer for bytes of a blob on ProtoBlob. It is not
// signed: the stream is authenticated by the transport and the bytes are
// checked against the CID. Blobs are private: the server serves one only
// to a peer with a reason to hold it, which the request may carry (see
// SPEC.md, "Blob access").
type BlobRequest struct {
	CID    []byte // binary CID
	Offset uint64
	Length uint64 // 0: to the end
	// Group and Task name the task the blob is wanted for (a consumer
	// fetching a result from the verifier); zero Group: none. They are a
	// hint for the server's lookup, not a proof.
	Group ID
	Task  uint32
	// Ticket is a sealed Assignment from the verifier that names the
	// requester as its worker (asking the assignment's consumer for its
	// module or an input); empty: none.
	Ticket []byte
}

// BlobResponse heads the bytes of a blob on ProtoBlob.
type BlobResponse struct {
	Status BlobStatus
	Size   uint64 // the blob's total size
	Length uint64 // bytes that follow
}

// BlobStatus answers a blob request.
type BlobStatus uint8

const (
	BlobOK         BlobStatus = 0
	BlobNotFound   BlobStatus = 1
	BlobBadRange   BlobStatus = 2
	BlobBusy       BlobStatus = 3
	BlobBadRequest BlobStatus = 4
)

// EncodeBlobRequest returns the canonical bytes of a blob request.
func EncodeBlobRequest(q *BlobRequest) []byte {
	w := writer{}
	w.bytes(q.CID)
	w.u64(q.Offset)
	w.u64(q.Length)
	w.id16(q.Group)
	w.u32(q.Task)
	w.bytes(q.Ticket)
	return w.b
}

// DecodeBlobRequest parses a blob request.
func DecodeBlobRequest(b []byte) (*BlobRequest, error) {
	r := reader{b: b}
	q := &BlobRequest{}
	c := r.cid()
	q.Offset = r.u64()
	q.Length = r.u64()
	q.Group = r.id16()
	q.Task = r.u32()
	if t := r.bytes(MaxMessageSize); len(t) > 0 {
		q.Ticket = t
	}
	if err := r.done(); err != nil {
		return nil, err
	}
	if !c.Defined() {
		return nil, fmt.Errorf("%w: blob request without CID", ErrMalformed)
	}
	q.CID = c.Bytes()
	return q, nil
}

// EncodeBlobResponse returns the canonical bytes of a blob response head.
func EncodeBlobResponse(p *BlobResponse) []byte {
	w := writer{}
	w.u8(uint8(p.Status))
	w.u64(p.Size)
	w.u64(p.Length)
	return w.b
}

// DecodeBlobResponse parses a blob response head.
func DecodeBlobResponse(b []byte) (*BlobResponse, error) {
	r := reader{b: b}
	p := &BlobResponse{Status: BlobStatus(r.u8()), Size: r.u64(), Length: r.u64()}
	if err := r.done(); err != nil {
		return nil, err
	}
	if p.Status > BlobBadRequest {
		return nil, fmt.Errorf("%w: blob status %d", ErrMalformed, p.Status)
	}
	if p.Size > MaxBlobSize || p.Length > p.Size {
		return nil, fmt.Errorf("%w: blob response size %d length %d", ErrMalformed, p.Size, p.Length)
	}
	return p, nil
}

// EnvelopeBytes returns the exact encoding of an opened envelope, so a
// verified message can be stored and re-verified later with Open.
func EnvelopeBytes(e *Envelope) []byte {
	w := writer{b: make([]byte, 0, 16+len(e.Signer)+len(e.Body)+len(e.Sig))}
	w.u8(Version)
	w.u8(uint8(e.Type))
	w.peer(e.Signer)
	w.bytes(e.Body)
	w.bytes(e.Sig)
	return w.b
}
