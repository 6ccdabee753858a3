package ledger

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"weak"

	"github.com/aspen-market/aspen/store"
)

// The book: balances in memory.
//
// The ledger is the only writer of its namespaces, and every write runs on
// the store's one committer goroutine, so it keeps every account's state
// (balance and newest journal entry) and the journal's last sequence number
// in memory instead of reading them from badger for each posting. A
// posting writes two records: its journal entry and its ID index entry.
// Balance records are a checkpoint: every checkpointEvery postings, or once
// checkpointDirty accounts have changed since the last checkpoint, the
// posting that crosses the line also writes the balance record of every
// account changed since, and meta "seq" (the checkpoint's sequence number),
// in its own transaction. Open loads the checkpoint and replays the journal
// after it.
//
// Postings run inside store.Durable functions, which share a transaction
// with others, may be discarded with it and run again on a fresh one. The
// book therefore keeps two states: committed (what badger holds, as far as
// the book knows) and pending (committed plus the ledger's writes in the
// transaction now being built on the committer, tx). A function of a
// different transaction means tx has ended, committed or discarded; its
// last posting's ID index entry, read through the new transaction, says
// which (one read per transaction). A caller whose Durable call succeeded
// knows its transaction committed and merges it at once, so a Post is
// visible to Balance as soon as it returns.

const (
	checkpointEvery = 4096
	checkpointDirty = 1024
)

type book struct {
	mu sync.Mutex

	// committed
	acct  map[string]accountState
	seq   uint64              // newest journal entry
	ckpt  uint64              // the balance records are current as of this seq
	dirty map[string]struct{} // accounts whose newest entry is after ckpt

	// pending: the ledger's writes in transaction ptx, on top of committed
	ptx   *store.Tx
	pacct map[string]accountState // accounts changed in ptx
	pnew  int                     // accounts in pacct and not in dirty
	pseq  uint64                  // newest journal entry in ptx (= seq if none)
	pid   []byte                  // ID of that entry
	pckpt uint64                  // checkpoint written in ptx (0: none)

	every, maxDirty int // checkpoint policy (tests lower them)
}

func newBook() *book {
	return &book{acct: map[string]accountState{}, dirty: map[string]struct{}{}, pacct: map[string]accountState{},
		every: checkpointEvery, maxDirty: checkpointDirty}
}

// books holds the book of every store with an open Ledger, so that all
// Ledgers of one store share one (a second book would not see the first
// one's postings). An entry goes when its store is garbage collected.
var books struct {
	sync.Mutex
	m map[weak.Pointer[store.Store]]*book
}

func bookOf(st *store.Store) (*book, error) {
	key := weak.Make(st)
	books.Lock()
	defer books.Unlock()
	if b := books.m[key]; b != nil {
		return b, nil
	}
	b := newBook()
	if err := st.View(b.load); err != nil {
		return nil, err
	}
	if books.m == nil {
		books.m = map[weak.Pointer[store.Store]]*book{}
	}
	books.m[key] = b
	runtime.AddCleanup(st, func(k weak.Pointer[store.Store]) {
		books.Lock()
		delete(books.m, k)
		books.Unlock()
	}, key)
	return b, nil
}

// load reads the checkpoint and replays the journal after it.
func (b *book) load(tx *store.Tx) error {
	ckpt, err := storedCheckpoint(tx)
	if err != nil {
		return err
	}
	acct := map[string]accountState{}
	if err := tx.Scan(nsBalance, nil, func(k, v []byte) error {
		st, err := decodeAccount(v)
		if err != nil {
			return fmt.Errorf("account %s: %w", k, err)
		}
		if st.Last > ckpt {
			return fmt.Errorf("%w: account %s: newest entry %d is after the checkpoint %d", ErrCorrupt, k, st.Last, ckpt)
		}
		acct[string(k)] = st
		return nil
	}); err != nil {
		return err
	}
	if ckpt > 0 {
		if _, err := readJournal(tx, ckpt); err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
	}
	dirty := map[string]struct{}{}
	seq := ckpt
	err = tx.ScanWith(nsJournal, store.ScanOptions{Start: seqKey(ckpt + 1)}, func(k, v []byte) error {
		s, err := decodeU64(k, "journal key")
		if err != nil {
			return err
		}
		if s != seq+1 {
			return fmt.Errorf("%w: journal jumps from %d to %d", ErrCorrupt, seq, s)
		}
		r, err := decodeJournal(s, v)
		if err != nil {
			return err
		}
		for i, e := range r.Entries {
			st := acct[e.Account]
			if r.Prev[i] != st.Last {
				return fmt.Errorf("%w: journal %d links %s back to %d, its previous entry is %d", ErrCorrupt, s, e.Account, r.Prev[i], st.Last)
			}
			nb, ok := addMicros(st.Balance, e.Amount)
			if !ok {
				return fmt.Errorf("%w: replay overflows %s at journal %d", ErrCorrupt, e.Account, s)
			}
			acct[e.Account] = accountState{Balance: nb, Last: s}
			dirty[e.Account] = struct{}{}
		}
		seq = s
		return nil
	})
	if err != nil {
		return err
	}
	b.acct, b.dirty, b.seq, b.ckpt = acct, dirty, seq, ckpt
	b.ptx, b.pseq, b.pid, b.pckpt, b.pnew = nil, seq, nil, 0, 0
	clear(b.pacct)
	return nil
}

func storedCheckpoint(tx *store.Tx) (uint64, error) {
	raw, err := tx.Get(nsMeta, seqKeyName)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return decodeU64(raw, "checkpoint")
}

// begin makes tx the pending transaction (b.mu held). If an earlier
// transaction left postings pending, it has ended: they are merged if it
// committed and dropped if not.
func (b *book) begin(tx *store.Tx) error {
	if b.ptx == tx {
		return nil
	}
	if b.pseq != b.seq {
		raw, err := tx.Get(nsID, b.pid)
		switch {
		case err == nil && bytes.Equal(raw, seqKey(b.pseq)):
			b.merge()
		case err == nil:
			// Someone else wrote the ledger: start again from the store.
			if err := b.load(tx); err != nil {
				return err
			}
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
	}
	b.ptx, b.pseq, b.pid, b.pckpt, b.pnew = tx, b.seq, nil, 0, 0
	clear(b.pacct)
	return nil
}

// merge makes the pending postings committed (b.mu held).
func (b *book) merge() {
	for a, st := range b.pacct {
		b.acct[a] = st
		b.dirty[a] = struct{}{}
	}
	b.seq = b.pseq
	if b.pckpt > b.ckpt {
		b.ckpt = b.pckpt
		for a := range b.dirty {
			if b.acct[a].Last <= b.ckpt {
				delete(b.dirty, a)
			}
		}
	}
	b.ptx, b.pid, b.pckpt, b.pnew = nil, nil, 0, 0
	clear(b.pacct)
}

// committed is called by a caller whose postings in tx were committed.
func (b *book) committed(tx *store.Tx) {
	b.mu.Lock()
	if b.ptx == tx && tx != nil && b.pseq != b.seq {
		b.merge()
	}
	b.mu.Unlock()
}

// view is acct's state in the pending transaction (b.mu held).
func (b *book) view(acct string) accountState {
	if st, ok := b.pacct[acct]; ok {
		return st
	}
	return b.acct[acct]
}

// set records acct's new state in the pending transaction (b.mu held).
func (b *book) set(acct string, st accountState) {
	if _, ok := b.pacct[acct]; !ok {
		if _, dirty := b.dirty[acct]; !dirty {
			b.pnew++
		}
	}
	b.pacct[acct] = st
}

// maybeCheckpoint writes the balance records changed since the last
// checkpoint and the checkpoint's seq, if it is time (b.mu held). At most
// one checkpoint is written per transaction.
func (b *book) maybeCheckpoint(tx *store.Tx) error {
	if b.pckpt != 0 || (b.pseq-b.ckpt < uint64(b.every) && len(b.dirty)+b.pnew < b.maxDirty) {
		return nil
	}
	for a := range b.dirty {
		if _, ok := b.pacct[a]; !ok {
			if err := tx.Put(nsBalance, []byte(a), encodeAccount(b.acct[a])); err != nil {
				return err
			}
		}
	}
	for a, st := range b.pacct {
		if err := tx.Put(nsBalance, []byte(a), encodeAccount(st)); err != nil {
			return err
		}
	}
	if err := tx.Put(nsMeta, seqKeyName, seqKey(b.pseq)); err != nil {
		return err
	}
	b.pckpt = b.pseq
	return nil
}

// snapshot returns a copy of the committed balances and their seq.
func (b *book) snapshot() (map[string]accountState, uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]accountState, len(b.acct))
	for a, st := range b.acct {
		out[a] = st
	}
	return out, b.seq
}

// state returns acct's committed state.
func (b *book) state(acct string) accountState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.acct[acct]
}

// accounts returns the accounts starting with prefix in the pending
// transaction, sorted (b.mu held).
func (b *book) accounts(prefix string) []string {
	var out []string
	for a := range b.acct {
		if strings.HasPrefix(a, prefix) {
			out = append(out, a)
		}
	}
	for a := range b.pacct {
		if _, ok := b.acct[a]; !ok && strings.HasPrefix(a, prefix) {
			out = append(out, a)
		}
	}
	slices.Sort(out)
	return out
}
