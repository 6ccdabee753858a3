package protocol

import (
	"crypto/sha256"
	"fmt"
	"hash"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// Blobs (modules, inputs, results) are named by CIDv1 with the raw codec and
// a sha2-256 multihash of their exact bytes.

// BlobCID returns the CID of data.
func BlobCID(data []byte) cid.Cid {
	sum := sha256.Sum256(data)
	return cidFromDigest(sum[:])
}

func cidFromDigest(d []byte) cid.Cid {
	enc, err := mh.Encode(d, mh.SHA2_256)
	if err != nil {
		panic(err) // unreachable: the digest length is fixed
	}
	return cid.NewCidV1(cid.Raw, enc)
}

// CheckBlobCID reports whether c is a CID Aspen accepts for blobs: CIDv1,
// raw codec, sha2-256 with a 32-byte digest.
func CheckBlobCID(c cid.Cid) error {
	if !c.Defined() {
		return fmt.Errorf("%w: undefined", ErrBadCID)
	}
	p := c.Prefix()
	if p.Version != 1 || p.Codec != cid.Raw || p.MhType != mh.SHA2_256 || p.MhLength != 32 {
		return fmt.Errorf("%w: %s is not CIDv1/raw/sha2-256", ErrBadCID, c)
	}
	return nil
}

// VerifyBlob returns nil when data hashes to c, and an error wrapping
// ErrCIDMismatch otherwise.
func VerifyBlob(c cid.Cid, data []byte) error {
	if err := CheckBlobCID(c); err != nil {
		return err
	}
	if got := BlobCID(data); !got.Equals(c) {
		return fmt.Errorf("%w: want %s, got %s", ErrCIDMismatch, c, got)
	}
	return nil
}

// BlobHasher hashes a blob as it streams in; Sum returns its CID.
type BlobHasher struct{ h hash.Hash }

// NewBlobHasher returns a hasher for streamed blob bytes.
func NewBlobHasher() *BlobHasher { return &BlobHasher{h: sha256.New()} }

// Write adds bytes; it never fails.
func (b *BlobHasher) Write(p []byte) (int, error) { return b.h.Write(p) }

// Sum returns the CID of everything written so far.
func (b *BlobHasher) Sum() cid.Cid { return cidFromDigest(b.h.Sum(nil)) }

// ParseCID parses a CID string and checks it is a blob CID.
func ParseCID(s string) (cid.Cid, error) {
	c, err := cid.Decode(s)
	if err != nil {
		return cid.Undef, fmt.Errorf("%w: %v", ErrBadCID, err)
	}
	return c, CheckBlobCID(c)
}
