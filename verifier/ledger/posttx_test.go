package ledger

import (
	"context"
	"errors"
	"testing"

	"github.com/aspen-market/aspen/store"
)

// TestPostTxCommitsWithTheCallersRecords: postings applied inside a
// caller's transaction commit with its records or not at all, Balance sees
// them once Committed is called, and a failed posting discards the
// caller's writes too.
func TestPostTxCommitsWithTheCallersRecords(t *testing.T) {
	l, st := openTest(t)
	ctx := context.Background()
	mustPost(t, l, CreditPosting("c", 1, "alice", 1_000_000))

	var last *store.Tx
	err := st.Durable(ctx, func(tx *store.Tx) error {
		last = tx
		if err := l.PostTx(tx, []Posting{escrowPosting("g/1", "alice", 300_000)}); err != nil {
			return err
		}
		return tx.Put("rec", []byte("g/1"), []byte("escrowed"))
	})
	if err != nil {
		t.Fatal(err)
	}
	l.Committed(last)
	mustBalance(t, l, ConsumerAccount("alice"), 700_000)
	mustBalance(t, l, EscrowAccount("alice"), 300_000)
	if v, err := st.Get("rec", []byte("g/1")); err != nil || string(v) != "escrowed" {
		t.Fatalf("record: %q %v", v, err)
	}

	// Refused: too much. Neither the record nor the first posting lands.
	err = st.Durable(ctx, func(tx *store.Tx) error {
		if err := tx.Put("rec", []byte("g/2"), []byte("escrowed")); err != nil {
			return err
		}
		return l.PostTx(tx, []Posting{escrowPosting("g/2", "alice", 100_000), escrowPosting("g/3", "alice", 900_000)})
	})
	mustErrIs(t, err, ErrInsufficientFunds)
	if _, err := st.Get("rec", []byte("g/2")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("record of a refused transaction: %v", err)
	}
	mustBalance(t, l, ConsumerAccount("alice"), 700_000)
	mustBalance(t, l, EscrowAccount("alice"), 300_000)

	// A replay inside a transaction is a no-op; Post after PostTx (without
	// Committed) sees the earlier postings.
	err = st.Update(func(tx *store.Tx) error {
		return l.PostTx(tx, []Posting{escrowPosting("g/1", "alice", 300_000), escrowPosting("g/4", "alice", 200_000)})
	})
	if err != nil {
		t.Fatal(err)
	}
	mustPost(t, l, escrowPosting("g/5", "alice", 500_000))
	mustBalance(t, l, ConsumerAccount("alice"), 0)
	mustBalance(t, l, EscrowAccount("alice"), 1_000_000)
	if err := l.Check(); err != nil {
		t.Fatal(err)
	}
}
