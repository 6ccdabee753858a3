package store

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/aspen-market/aspen/protocol"
)

// TestTxPutBlob: blobs written in a Durable transaction become visible
// with the record that names them, all or nothing; a wrong CID or a blob
// too large for a transaction fails the call and stores nothing.
func TestTxPutBlob(t *testing.T) {
	s := openTest(t, "", smallChunks)
	ctx := context.Background()
	a, b := randBytes(1, 100), randBytes(2, 1<<10)
	ca, cb := protocol.BlobCID(a), protocol.BlobCID(b)
	err := s.Durable(ctx, func(tx *Tx) error {
		if err := tx.PutBlob(ca, a); err != nil {
			return err
		}
		if err := tx.PutBlob(cb, b); err != nil {
			return err
		}
		return tx.Put("rec", []byte("k"), []byte(ca.String()))
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range [][]byte{a, b} {
		got, err := s.GetBlob(protocol.BlobCID(want))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("GetBlob: %v", err)
		}
	}
	// Storing it again is a no-op that succeeds.
	if err := s.Update(func(tx *Tx) error { return tx.PutBlob(ca, a) }); err != nil {
		t.Fatal(err)
	}

	// A mismatch fails the whole transaction: the record is not written.
	bad := bytes.Clone(b)
	bad[0] ^= 1
	c := protocol.BlobCID(randBytes(3, 10))
	err = s.Durable(ctx, func(tx *Tx) error {
		if err := tx.Put("rec", []byte("bad"), []byte("x")); err != nil {
			return err
		}
		return tx.PutBlob(c, bad)
	})
	mustErrIs(t, err, protocol.ErrCIDMismatch)
	if _, err := s.Get("rec", []byte("bad")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("record of a failed transaction visible: %v", err)
	}
	if _, ok, _ := s.HasBlob(c); ok {
		t.Fatal("mismatching blob stored")
	}

	// Too large for a transaction.
	big := randBytes(4, (1<<10)+1)
	err = s.Update(func(tx *Tx) error { return tx.PutBlob(protocol.BlobCID(big), big) })
	mustErrIs(t, err, ErrTooLarge)

	// Read-only transactions refuse.
	err = s.View(func(tx *Tx) error { return tx.PutBlob(ca, a) })
	mustErrIs(t, err, ErrInvalid)
}
