package ledger

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/aspen-market/aspen/protocol"
)

// Store namespaces.
const (
	nsJournal = "ledger/journal" // seq (u64 BE) → JSON journalRecord
	nsID      = "ledger/id"      // posting ID → seq (u64 BE)
	nsBalance = "ledger/balance" // account → accountState (16 bytes)
	nsMeta    = "ledger/meta"    // "seq" → last journal seq (u64 BE)
	nsBatch   = "ledger/batch"   // batch ID → JSON Batch
)

var seqKeyName = []byte("seq")

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

func decodeU64(b []byte, what string) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("%w: %s is %d bytes, want 8", ErrCorrupt, what, len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

// accountState is the stored record of one account: its balance and the
// sequence number of the newest journal entry touching it. Each journal
// record keeps, per entry, the previous entry's sequence number for that
// account, so an account's history is a chain through the journal that
// costs no extra records per posting.
type accountState struct {
	Balance protocol.Micros
	Last    uint64
}

func encodeAccount(a accountState) []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 16), uint64(a.Balance))
	return binary.BigEndian.AppendUint64(b, a.Last)
}

func decodeAccount(b []byte) (accountState, error) {
	if len(b) != 16 {
		return accountState{}, fmt.Errorf("%w: account record is %d bytes, want 16", ErrCorrupt, len(b))
	}
	return accountState{protocol.Micros(binary.BigEndian.Uint64(b)), binary.BigEndian.Uint64(b[8:])}, nil
}

// journalRecord is the stored form of a journal entry.
type journalRecord struct {
	JournalEntry
	// Prev[i] is the sequence number of the previous journal entry on
	// Entries[i].Account (0: this is the account's first).
	Prev []uint64 `json:"prev"`
}

func encodeJournal(r *journalRecord) []byte {
	b, err := json.Marshal(r)
	if err != nil {
		panic(err) // unreachable: plain strings and integers
	}
	return b
}

// strictUnmarshal decodes JSON refusing unknown fields and trailing data.
func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data")
	}
	return nil
}

// decodeJournal parses a stored journal record and checks it is a valid
// posting recorded under seq whose account chain points backwards.
func decodeJournal(seq uint64, b []byte) (journalRecord, error) {
	var r journalRecord
	if err := strictUnmarshal(b, &r); err != nil {
		return journalRecord{}, fmt.Errorf("%w: journal %d: %v", ErrCorrupt, seq, err)
	}
	if r.Seq != seq || seq == 0 {
		return journalRecord{}, fmt.Errorf("%w: journal record %d says seq %d", ErrCorrupt, seq, r.Seq)
	}
	if err := r.Posting.Validate(); err != nil {
		return journalRecord{}, fmt.Errorf("%w: journal %d: %v", ErrCorrupt, seq, err)
	}
	if len(r.Prev) != len(r.Entries) {
		return journalRecord{}, fmt.Errorf("%w: journal %d: %d chain links for %d entries", ErrCorrupt, seq, len(r.Prev), len(r.Entries))
	}
	for _, p := range r.Prev {
		if p >= seq {
			return journalRecord{}, fmt.Errorf("%w: journal %d: chain link %d does not point back", ErrCorrupt, seq, p)
		}
	}
	return r, nil
}

// prevFor returns the chain link of account acct in r.
func (r *journalRecord) prevFor(acct string) (uint64, bool) {
	for i, e := range r.Entries {
		if e.Account == acct {
			return r.Prev[i], true
		}
	}
	return 0, false
}

func encodeBatch(b *Batch) []byte {
	out, err := json.Marshal(b)
	if err != nil {
		panic(err) // unreachable
	}
	return out
}

// decodeBatch parses a stored payout batch and checks its arithmetic.
func decodeBatch(raw []byte) (Batch, error) {
	var b Batch
	if err := strictUnmarshal(raw, &b); err != nil {
		return Batch{}, fmt.Errorf("%w: payout batch: %v", ErrCorrupt, err)
	}
	if err := b.check(); err != nil {
		return Batch{}, fmt.Errorf("%w: payout batch %q: %v", ErrCorrupt, b.ID, err)
	}
	return b, nil
}
