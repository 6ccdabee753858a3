package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/ipfs/go-cid"

	"github.com/aspen-market/aspen/protocol"
)

// Stores written before blob files existed hold large blobs as chunks in
// badger (layout chunked). The store still reads and deletes them;
// writeChunked is that old writer, kept for the tests of those paths.

// writeChunked stores a blob of more than InlineMax bytes in chunks under a
// fresh upload id. A pending marker for the upload is written first; the
// metadata record that makes the chunks live is written (and the marker
// removed) only after the chunks are synced. Until then, and after any
// failure, the marker lets the upload be removed, now or at the next Open.
func (s *Store) writeChunked(ctx context.Context, c cid.Cid, r io.Reader, maxSize int64, verify bool) (int64, error) {
	var up uploadID
	if _, err := rand.Read(up[:]); err != nil {
		return 0, fmt.Errorf("store: upload id: %w", err)
	}
	if err := s.rawUpdate(func(tx *Tx) error { return tx.setRaw(pendingKey(up), c.Bytes()) }); err != nil {
		return 0, fmt.Errorf("store: write blob %s: %w", c, err)
	}
	fail := func(err error) (int64, error) {
		if derr := s.dropUpload(up); derr != nil {
			s.log.Warn("removing failed upload", "cid", c, "err", derr)
		}
		return 0, err
	}
	hasher := protocol.NewBlobHasher()
	buf := make([]byte, s.cfg.ChunkSize)
	var hashes [][chunkHashBytes]byte
	var total int64
	for idx := uint64(0); ; idx++ {
		if err := ctxErr(ctx); err != nil {
			return fail(fmt.Errorf("store: write blob %s: %w", c, err))
		}
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			total += int64(n)
			if total > maxSize {
				return fail(fmt.Errorf("%w: blob %s exceeds %d bytes", ErrTooLarge, c, maxSize))
			}
			if idx > math.MaxUint32 {
				return fail(fmt.Errorf("%w: blob %s has too many chunks", ErrTooLarge, c))
			}
			chunk := buf[:n]
			if verify {
				_, _ = hasher.Write(chunk)
			}
			hashes = append(hashes, sha256.Sum256(chunk))
			k := chunkKey(up, uint32(idx))
			if err := s.rawUpdate(func(tx *Tx) error { return tx.setRaw(k, chunk) }); err != nil {
				return fail(fmt.Errorf("store: write blob %s chunk %d: %w", c, idx, err))
			}
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			return fail(fmt.Errorf("store: write blob %s: read: %w", c, rerr))
		}
	}
	if verify {
		if got := hasher.Sum(); !got.Equals(c) {
			return fail(fmt.Errorf("store: write blob: %w: want %s, got %s", protocol.ErrCIDMismatch, c, got))
		}
	}
	if total == 0 {
		return fail(fmt.Errorf("%w: empty chunked blob", ErrInvalid))
	}
	// The chunks must be on disk before a durable record points at them.
	if err := s.Sync(); err != nil {
		return fail(err)
	}
	meta := encodeChunkedMeta(total, up, int64(s.cfg.ChunkSize), hashes)
	k := blobKey(c)
	var existed bool
	err := s.Durable(ctx, func(tx *Tx) error {
		existed = false
		if old, err := tx.getRaw(k); err == nil {
			if _, derr := decodeBlobMeta(old); derr == nil {
				existed = true // a concurrent writer stored it first
				return nil
			} // else: replace the corrupt record
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		if err := tx.setRaw(k, meta); err != nil {
			return err
		}
		return tx.deleteRaw(pendingKey(up))
	})
	if err != nil {
		return fail(fmt.Errorf("store: write blob %s: %w", c, err))
	}
	if existed {
		if derr := s.dropUpload(up); derr != nil {
			s.log.Warn("removing duplicate upload", "cid", c, "err", derr)
		}
	}
	s.trimSoon()
	return total, nil
}
