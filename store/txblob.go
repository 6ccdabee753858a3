package store

import (
	"errors"
	"fmt"

	"github.com/ipfs/go-cid"

	"github.com/aspen-market/aspen/protocol"
)

// PutBlob stores a small blob (at most Config.InlineMax bytes) under c as
// part of the transaction, after checking that data hashes to c (a mismatch
// is an error wrapping protocol.ErrCIDMismatch). The blob becomes visible
// and durable together with the transaction's other writes, so a record
// that names the blob and the blob itself are committed, and synced, as
// one: callers that write many small results use it to pay one group
// commit and one fsync for all of them instead of one per blob. A blob
// already stored is left as it is. Larger blobs fail with ErrTooLarge; use
// Store.PutBlob or Store.WriteBlob for them.
func (tx *Tx) PutBlob(c cid.Cid, data []byte) error {
	if tx.readOnly {
		return fmt.Errorf("%w: put blob in a read-only transaction", ErrInvalid)
	}
	if len(data) > tx.s.cfg.InlineMax {
		return fmt.Errorf("%w: blob of %d bytes in a transaction, limit %d", ErrTooLarge, len(data), tx.s.cfg.InlineMax)
	}
	if err := protocol.VerifyBlob(c, data); err != nil {
		return fmt.Errorf("store: put blob: %w", err)
	}
	return tx.putInline(c, data)
}

// putInline stores a small blob, already verified against c, as one
// record; a blob already stored is left as it is, a corrupt record is
// overwritten.
func (tx *Tx) putInline(c cid.Cid, data []byte) error {
	k := blobKey(c)
	old, err := tx.getRaw(k)
	switch {
	case err == nil:
		if m, derr := decodeBlobMeta(old); derr == nil && (m.chunked || protocol.VerifyBlob(c, m.inline) == nil) {
			return nil
		}
	case !errors.Is(err, ErrNotFound):
		return err
	}
	return tx.setRaw(k, encodeInlineMeta(data))
}

// InlineMax is the largest blob Tx.PutBlob accepts (Config.InlineMax).
func (s *Store) InlineMax() int { return s.cfg.InlineMax }
