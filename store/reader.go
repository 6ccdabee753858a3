package store

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"

	"github.com/aspen-market/aspen/protocol"
)

// BlobReader reads a stored blob. It implements io.Reader, io.ReaderAt,
// io.Seeker and io.Closer.
//
// Verification: every chunk is checked against the checksum recorded for it
// when the blob was written and verified against its CID (CRC-32C for a
// blob file, sha-256 for a chunked blob of an older store) before any of
// its bytes are returned (an inline blob is checked against its CID), so
// ReadAt never returns bytes that fail verification: it fails with
// ErrCorrupt instead. Reading the blob with Read from offset 0 to the
// end also hashes the whole stream; if that hash does not match the CID the
// final Read returns an error wrapping ErrCorrupt and protocol.ErrCIDMismatch
// instead of io.EOF. Seeking anywhere but offset 0 ends whole-stream
// verification for that pass.
//
// ReadAt may be called concurrently; Read and Seek may not (as for any
// io.Reader). If the blob is deleted before the reader's first read, reads
// fail with ErrNotFound; a reader of a blob file that has started reading
// keeps reading the (still verified) bytes it opened.
type BlobReader struct {
	s    *Store
	c    cid.Cid
	meta blobMeta

	mu       sync.Mutex // guards the chunk cache and f
	cacheIdx int64
	cache    []byte
	f        *os.File // the blob file, opened at the first read

	// Read/Seek state.
	off      int64
	hasher   *protocol.BlobHasher // nil when not verifying this pass
	hashed   int64                // bytes hashed, contiguously from 0
	finalErr error                // sticky result of the whole-stream check
	closed   bool
}

// Size is the blob's size in bytes.
func (r *BlobReader) Size() int64 { return r.meta.size }

// ChunkSize is the unit in which the blob is stored and verified: a ReadAt
// of whole chunks at a multiple of it reads them straight into the caller's
// buffer. An inline blob is one chunk.
func (r *BlobReader) ChunkSize() int64 {
	if r.meta.chunked {
		return r.meta.chunkSize
	}
	return max(r.meta.size, 1)
}

// CID is the blob's CID.
func (r *BlobReader) CID() cid.Cid { return r.c }

// Close releases the reader's buffer. Reading after Close fails.
func (r *BlobReader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	r.cache = nil
	if r.f != nil {
		err := r.f.Close()
		r.f = nil
		return err
	}
	return nil
}

// ReadAt reads len(p) bytes at off, verifying every chunk it touches. At
// the end of the blob it returns fewer bytes and io.EOF.
func (r *BlobReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%w: negative offset", ErrInvalid)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, fmt.Errorf("%w: blob reader", ErrClosed)
	}
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		if pos >= r.meta.size {
			return n, io.EOF
		}
		idx := int64(0)
		if r.meta.chunked {
			idx = pos / r.meta.chunkSize
		}
		start := pos
		if r.meta.chunked {
			start -= idx * r.meta.chunkSize
		}
		if clen := r.meta.chunkLen(idx); r.meta.file && start == 0 && int64(len(p)-n) >= clen && idx != r.cacheIdx {
			// A whole chunk: read and verify it in place.
			if err := r.readFileChunk(idx, p[n:n+int(clen)]); err != nil {
				return n, err
			}
			n += int(clen)
			continue
		}
		chunk, err := r.chunk(idx)
		if err != nil {
			return n, err
		}
		n += copy(p[n:], chunk[start:])
	}
	return n, nil
}

// chunk returns verified chunk idx, from the cache or the store. r.mu held.
func (r *BlobReader) chunk(idx int64) ([]byte, error) {
	if idx == r.cacheIdx {
		return r.cache, nil
	}
	if !r.meta.chunked {
		if err := protocol.VerifyBlob(r.c, r.meta.inline); err != nil {
			return nil, fmt.Errorf("%w: blob %s: %w", ErrCorrupt, r.c, err)
		}
		r.cache, r.cacheIdx = r.meta.inline, 0
		return r.cache, nil
	}
	want := r.meta.chunkLen(idx)
	r.cacheIdx = -1
	if r.meta.file {
		if int64(cap(r.cache)) < want {
			r.cache = make([]byte, r.meta.chunkSize)
		}
		r.cache = r.cache[:want]
		if err := r.readFileChunk(idx, r.cache); err != nil {
			return nil, err
		}
		r.cacheIdx = idx
		return r.cache, nil
	}
	k := chunkKey(r.meta.upload, uint32(idx))
	err := r.s.View(func(tx *Tx) error {
		item, err := tx.txn.Get(k)
		if err != nil {
			return err
		}
		r.cache, err = item.ValueCopy(r.cache[:0])
		if err == nil && int64(len(r.cache)) != want {
			err = fmt.Errorf("%w: blob %s chunk %d is %d bytes, want %d", ErrCorrupt, r.c, idx, len(r.cache), want)
		}
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("%w: blob %s chunk %d (deleted?)", ErrNotFound, r.c, idx)
	}
	if err != nil {
		return nil, fmt.Errorf("store: blob %s chunk %d: %w", r.c, idx, err)
	}
	if sha256.Sum256(r.cache) != r.meta.hashes[idx] {
		return nil, fmt.Errorf("%w: blob %s chunk %d fails its sha-256", ErrCorrupt, r.c, idx)
	}
	r.cacheIdx = idx
	return r.cache, nil
}

// readFileChunk reads chunk idx of a blob file into dst (exactly the
// chunk's length) and checks its CRC-32C. r.mu held.
func (r *BlobReader) readFileChunk(idx int64, dst []byte) error {
	if r.f == nil {
		f, err := os.Open(r.s.blobPath(r.meta.upload))
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: blob %s file (deleted?)", ErrNotFound, r.c)
		}
		if err != nil {
			return fmt.Errorf("store: blob %s: %w", r.c, err)
		}
		r.f = f
	}
	n, err := r.f.ReadAt(dst, idx*r.meta.chunkSize)
	if n < len(dst) {
		if err == nil || errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: blob %s file ends in chunk %d", ErrCorrupt, r.c, idx)
		}
		return fmt.Errorf("store: blob %s chunk %d: %w", r.c, idx, err)
	}
	if chunkCRC(dst) != r.meta.crcs[idx] {
		return fmt.Errorf("%w: blob %s chunk %d fails its checksum", ErrCorrupt, r.c, idx)
	}
	return nil
}

// Read reads the next bytes of the blob. See BlobReader for verification.
func (r *BlobReader) Read(p []byte) (int, error) {
	if r.finalErr != nil {
		return 0, r.finalErr
	}
	if r.off >= r.meta.size {
		return 0, r.finish()
	}
	n, err := r.ReadAt(p, r.off)
	if n > 0 && r.hasher != nil && r.hashed == r.off {
		_, _ = r.hasher.Write(p[:n])
		r.hashed += int64(n)
	}
	r.off += int64(n)
	if err != nil && !errors.Is(err, io.EOF) {
		return n, err
	}
	if r.off >= r.meta.size {
		return n, r.finish()
	}
	return n, nil
}

// finish runs the whole-stream check once the end is reached.
func (r *BlobReader) finish() error {
	if r.hasher != nil && r.hashed == r.meta.size && r.meta.chunked {
		if got := r.hasher.Sum(); !got.Equals(r.c) {
			r.finalErr = fmt.Errorf("%w: blob %s: %w: stream hashed to %s", ErrCorrupt, r.c, protocol.ErrCIDMismatch, got)
			return r.finalErr
		}
		r.hasher = nil // verified; later passes rely on chunk hashes
	}
	if r.meta.chunked && !r.meta.file {
		r.s.trimSoon()
	}
	return io.EOF
}

// Seek sets the offset for the next Read. Seeking to 0 restarts
// whole-stream verification.
func (r *BlobReader) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = r.off + offset
	case io.SeekEnd:
		abs = r.meta.size + offset
	default:
		return 0, fmt.Errorf("%w: seek whence %d", ErrInvalid, whence)
	}
	if abs < 0 {
		return 0, fmt.Errorf("%w: seek to negative offset", ErrInvalid)
	}
	if abs == 0 && abs != r.off {
		r.hasher = protocol.NewBlobHasher()
		r.hashed = 0
		r.finalErr = nil
	}
	r.off = abs
	return abs, nil
}
