package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"

	"github.com/aspen-market/aspen/protocol"
)

func blobKey(c cid.Cid) []byte {
	cb := c.Bytes()
	k := make([]byte, 0, 1+len(cb))
	return append(append(k, kindBlob), cb...)
}

func chunkPrefix(up uploadID) []byte {
	return append([]byte{kindChunk}, up[:]...)
}

func chunkKey(up uploadID, idx uint32) []byte {
	return binary.BigEndian.AppendUint32(chunkPrefix(up), idx)
}

func pendingKey(up uploadID) []byte {
	return append([]byte{kindPending}, up[:]...)
}

// setRaw and deleteRaw write internal keys, keeping the Tx's bookkeeping
// (write count, sticky error) that group commit relies on.
func (tx *Tx) setRaw(k, v []byte) error {
	tx.writes++
	tx.s.noteWrite(len(v))
	if err := tx.txn.Set(k, v); err != nil {
		err = txErr(err)
		if tx.err == nil {
			tx.err = err
		}
		return err
	}
	return nil
}

func (tx *Tx) deleteRaw(k []byte) error {
	tx.writes++
	if err := tx.txn.Delete(k); err != nil {
		err = txErr(err)
		if tx.err == nil {
			tx.err = err
		}
		return err
	}
	return nil
}

// getRaw returns the value of an internal key (a copy), or ErrNotFound.
func (tx *Tx) getRaw(k []byte) ([]byte, error) {
	item, err := tx.txn.Get(k)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return item.ValueCopy(nil)
}

// PutBlob stores data under its CID and returns the CID. It returns once the
// blob is durable (survives power loss). Storing a blob that is already
// present is cheap and succeeds.
func (s *Store) PutBlob(data []byte) (cid.Cid, error) {
	c := protocol.BlobCID(data)
	if err := s.putBlob(c, data); err != nil {
		return cid.Undef, err
	}
	return c, nil
}

// PutBlobVerified stores data under c after checking that data hashes to c;
// a mismatch is an error wrapping protocol.ErrCIDMismatch and nothing is
// stored. Durable like PutBlob.
func (s *Store) PutBlobVerified(c cid.Cid, data []byte) error {
	if err := protocol.VerifyBlob(c, data); err != nil {
		return fmt.Errorf("store: put blob: %w", err)
	}
	return s.putBlob(c, data)
}

// putBlob stores data, already known to hash to c.
func (s *Store) putBlob(c cid.Cid, data []byte) error {
	if int64(len(data)) > s.cfg.MaxBlobSize {
		return fmt.Errorf("%w: blob of %d bytes, limit %d", ErrTooLarge, len(data), s.cfg.MaxBlobSize)
	}
	if len(data) <= s.cfg.InlineMax {
		return s.putInline(context.Background(), c, data)
	}
	if _, ok, err := s.HasBlob(c); err == nil && ok {
		return nil // already stored
	}
	return s.putFile(context.Background(), c, data)
}

// putInline stores a small blob (already verified) as one key in one
// group-committed transaction.
func (s *Store) putInline(ctx context.Context, c cid.Cid, data []byte) error {
	err := s.Durable(ctx, func(tx *Tx) error { return tx.putInline(c, data) })
	if err != nil {
		return fmt.Errorf("store: put blob %s: %w", c, err)
	}
	return nil
}

// WriteBlob streams a blob from r and stores it under c. It hashes the bytes
// as they arrive and stores them only if they hash to c; otherwise it
// returns an error wrapping protocol.ErrCIDMismatch. A blob larger than
// maxSize (or Config.MaxBlobSize, whichever is smaller; maxSize ≤ 0 means
// the latter) fails with ErrTooLarge as soon as the excess is read. Partial
// or failed writes never become visible and their chunks are removed. It
// returns once the blob is durable. If c is already stored WriteBlob returns
// its size without reading r.
func (s *Store) WriteBlob(ctx context.Context, c cid.Cid, r io.Reader, maxSize int64) (int64, error) {
	if err := protocol.CheckBlobCID(c); err != nil {
		return 0, fmt.Errorf("store: write blob: %w", err)
	}
	if maxSize <= 0 || maxSize > s.cfg.MaxBlobSize {
		maxSize = s.cfg.MaxBlobSize
	}
	switch size, ok, err := s.HasBlob(c); {
	case err == nil && ok:
		return size, nil
	case err != nil && !errors.Is(err, ErrCorrupt):
		return 0, err
	}
	// Missing, or a corrupt record that this write replaces.
	head := make([]byte, s.cfg.InlineMax+1)
	n, err := io.ReadFull(r, head)
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		data := head[:n]
		if int64(n) > maxSize {
			return 0, fmt.Errorf("%w: blob %s exceeds %d bytes", ErrTooLarge, c, maxSize)
		}
		if err := protocol.VerifyBlob(c, data); err != nil {
			return 0, fmt.Errorf("store: write blob: %w", err)
		}
		if err := s.putInline(ctx, c, data); err != nil {
			return 0, err
		}
		return int64(n), nil
	case err != nil:
		return 0, fmt.Errorf("store: write blob %s: read: %w", c, err)
	}
	return s.writeFile(ctx, c, io.MultiReader(bytes.NewReader(head), r), maxSize)
}

// rawUpdate writes internal blob keys directly (not through the committer):
// only keys no other transaction writes (chunks and markers of one upload).
func (s *Store) rawUpdate(fn func(tx *Tx) error) error { return s.directUpdate(fn) }

// dropUpload deletes every chunk of an upload, then its pending marker.
func (s *Store) dropUpload(up uploadID) error {
	prefix := chunkPrefix(up)
	for {
		var keys [][]byte
		err := s.View(func(tx *Tx) error {
			opt := badger.DefaultIteratorOptions
			opt.PrefetchValues = false
			opt.Prefix = prefix
			it := tx.txn.NewIterator(opt)
			defer it.Close()
			for it.Rewind(); it.Valid() && len(keys) < 1000; it.Next() {
				keys = append(keys, it.Item().KeyCopy(nil))
			}
			return nil
		})
		if err != nil {
			return err
		}
		if len(keys) == 0 {
			break
		}
		if err := s.rawUpdate(func(tx *Tx) error {
			for _, k := range keys {
				if err := tx.deleteRaw(k); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
	}
	return s.rawUpdate(func(tx *Tx) error { return tx.deleteRaw(pendingKey(up)) })
}

// collectPending removes uploads (and deletions) interrupted by a crash.
func (s *Store) collectPending() error {
	var ups []uploadID
	err := s.View(func(tx *Tx) error {
		opt := badger.DefaultIteratorOptions
		opt.PrefetchValues = false
		opt.Prefix = []byte{kindPending}
		it := tx.txn.NewIterator(opt)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) != 1+len(uploadID{}) {
				continue
			}
			var up uploadID
			copy(up[:], k[1:])
			ups = append(ups, up)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: scan pending uploads: %w", err)
	}
	for _, up := range ups {
		if err := s.dropUpload(up); err != nil {
			return fmt.Errorf("store: remove interrupted upload: %w", err)
		}
	}
	if len(ups) > 0 {
		s.log.Info("removed interrupted blob uploads", "count", len(ups))
	}
	return nil
}

// readMeta returns the metadata record of c, or ErrNotFound.
func (s *Store) readMeta(c cid.Cid) (blobMeta, error) {
	if err := protocol.CheckBlobCID(c); err != nil {
		return blobMeta{}, fmt.Errorf("store: %w", err)
	}
	var m blobMeta
	err := s.View(func(tx *Tx) error {
		v, err := tx.getRaw(blobKey(c))
		if err != nil {
			return err
		}
		m, err = decodeBlobMeta(v)
		return err
	})
	if err != nil {
		return blobMeta{}, fmt.Errorf("store: blob %s: %w", c, err)
	}
	return m, nil
}

// HasBlob reports whether c is stored, and its size.
func (s *Store) HasBlob(c cid.Cid) (size int64, ok bool, err error) {
	if err := protocol.CheckBlobCID(c); err != nil {
		return 0, false, fmt.Errorf("store: %w", err)
	}
	err = s.View(func(tx *Tx) error {
		item, err := tx.txn.Get(blobKey(c))
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			size, err = decodeBlobSize(v)
			return err
		})
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("store: blob %s: %w", c, err)
	}
	return size, true, nil
}

// GetBlob returns the whole blob c, verified against its CID. A blob larger
// than Config.MaxGetBlobSize fails with ErrTooLarge (use OpenBlob); a blob
// whose bytes fail verification fails with ErrCorrupt.
func (s *Store) GetBlob(c cid.Cid) ([]byte, error) {
	m, err := s.readMeta(c)
	if err != nil {
		return nil, err
	}
	if m.size > s.cfg.MaxGetBlobSize {
		return nil, fmt.Errorf("%w: blob %s is %d bytes, GetBlob limit %d", ErrTooLarge, c, m.size, s.cfg.MaxGetBlobSize)
	}
	if !m.chunked {
		if err := protocol.VerifyBlob(c, m.inline); err != nil {
			return nil, fmt.Errorf("%w: blob %s: %w", ErrCorrupt, c, err)
		}
		return bytes.Clone(m.inline), nil
	}
	br := &BlobReader{s: s, c: c, meta: m, cacheIdx: -1}
	out := make([]byte, m.size)
	_, err = br.ReadAt(out, 0)
	_ = br.Close()
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if !m.file {
		s.trimSoon()
	}
	if err := protocol.VerifyBlob(c, out); err != nil {
		return nil, fmt.Errorf("%w: blob %s: %w", ErrCorrupt, c, err)
	}
	return out, nil
}

// OpenBlob returns a reader over blob c. See BlobReader for how reads are
// verified.
func (s *Store) OpenBlob(c cid.Cid) (*BlobReader, error) {
	m, err := s.readMeta(c)
	if err != nil {
		return nil, err
	}
	br := &BlobReader{s: s, c: c, meta: m, cacheIdx: -1}
	br.hasher = protocol.NewBlobHasher()
	return br, nil
}

// DeleteBlob removes blob c. Removing a missing blob is not an error. Like
// Update, it is not synced by itself.
func (s *Store) DeleteBlob(c cid.Cid) error {
	if err := protocol.CheckBlobCID(c); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	k := blobKey(c)
	var up *uploadID
	var file bool
	err := s.Update(func(tx *Tx) error {
		up, file = nil, false
		v, err := tx.getRaw(k)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if m, derr := decodeBlobMeta(v); derr == nil && m.chunked {
			u := m.upload
			up, file = &u, m.file
			if file {
				// Without its 'f' key the file is garbage, even if we
				// crash now (Open removes it).
				if err := tx.deleteRaw(fileKey(u)); err != nil {
					return err
				}
			} else if err := tx.setRaw(pendingKey(u), c.Bytes()); err != nil {
				// The marker makes the chunks garbage even if we crash now.
				return err
			}
		}
		return tx.deleteRaw(k)
	})
	if err != nil {
		return fmt.Errorf("store: delete blob %s: %w", c, err)
	}
	switch {
	case up != nil && file:
		// The deletion must be on disk before the file goes: a power loss
		// must not bring back a record whose file is gone.
		if err := s.Sync(); err != nil {
			return fmt.Errorf("store: delete blob %s: %w", c, err)
		}
		if err := s.deleteFile(*up); err != nil {
			return fmt.Errorf("store: delete blob %s file: %w", c, err)
		}
	case up != nil:
		if err := s.dropUpload(*up); err != nil {
			return fmt.Errorf("store: delete blob %s chunks: %w", c, err)
		}
	}
	return nil
}

// ListBlobs calls fn for every stored blob, in CID byte order. If fn
// returns ErrStop the listing ends and ListBlobs returns nil. Records that
// do not decode are logged and skipped.
func (s *Store) ListBlobs(fn func(c cid.Cid, size int64) error) error {
	return s.View(func(tx *Tx) error {
		opt := badger.DefaultIteratorOptions
		opt.PrefetchValues = false
		opt.Prefix = []byte{kindBlob}
		it := tx.txn.NewIterator(opt)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			c, err := cid.Cast(item.Key()[1:])
			if err != nil {
				s.log.Warn("skipping blob record with a bad key", "key", fmt.Sprintf("%x", item.Key()), "err", err)
				continue
			}
			var size int64
			if err := item.Value(func(v []byte) error {
				size, err = decodeBlobSize(v)
				return err
			}); err != nil {
				s.log.Warn("skipping undecodable blob record", "cid", c, "err", err)
				continue
			}
			if err := fn(c, size); err != nil {
				if errors.Is(err, ErrStop) {
					return nil
				}
				return err
			}
		}
		return nil
	})
}
