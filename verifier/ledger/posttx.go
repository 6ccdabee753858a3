package ledger

import "github.com/aspen-market/aspen/store"

// PostTx applies ps, in order, inside tx: a read-write transaction of the
// store the ledger lives in, that is the function of a store.Durable or
// store.Update call. The postings commit, and become durable, together
// with the caller's other writes in tx: a record that says "escrowed" or
// "settled" and the money that moved can never disagree after a crash, and
// they share one commit and one fsync.
//
// Like PostBatch, either every posting is applied (or already was, by ID)
// or the first error is returned, and the caller must then fail its
// function so that nothing of tx is committed. tx may be discarded and the
// function run again; the ledger notices. Once the caller's Durable or
// Update call has returned nil, it should call Committed(tx) with the last
// transaction its function ran in, so that Balance sees the postings at
// once (otherwise it does when the next posting begins).
func (l *Ledger) PostTx(tx *store.Tx, ps []Posting) error {
	for i := range ps {
		pr, err := prepare(&ps[i])
		if err != nil {
			return err
		}
		if _, err := l.b.apply(tx, &pr); err != nil {
			return err
		}
	}
	return nil
}

// Committed tells the ledger that tx, in which PostTx applied postings,
// has committed.
func (l *Ledger) Committed(tx *store.Tx) { l.b.committed(tx) }
