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
	nsJournal = "ledger/journal" // seq (u64 BE) → JSON JournalEntry
	nsID      = "ledger/id"      // posting ID → seq (u64 BE)
	nsBalance = "ledger/balance" // account → balance (i64 BE)
	nsAcct    = "ledger/acct"    // account 0x00 seq → empty (per-account journal index)
	nsMeta    = "ledger/meta"    // "seq" → last journal seq (u64 BE)
	nsBatch   = "ledger/batch"   // batch ID → JSON Batch
)

var seqKeyName = []byte("seq")

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

func acctKey(acct string, seq uint64) []byte {
	k := make([]byte, 0, len(acct)+9)
	k = append(k, acct...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, seq)
}

func acctPrefix(acct string) []byte { return append([]byte(acct), 0) }

func decodeU64(b []byte, what string) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("%w: %s is %d bytes, want 8", ErrCorrupt, what, len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

func encodeBalance(m protocol.Micros) []byte { return binary.BigEndian.AppendUint64(nil, uint64(m)) }

func decodeBalance(b []byte) (protocol.Micros, error) {
	v, err := decodeU64(b, "balance")
	return protocol.Micros(v), err
}

func encodeJournal(e *JournalEntry) []byte {
	b, err := json.Marshal(e)
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
// posting recorded under seq.
func decodeJournal(seq uint64, b []byte) (JournalEntry, error) {
	var e JournalEntry
	if err := strictUnmarshal(b, &e); err != nil {
		return JournalEntry{}, fmt.Errorf("%w: journal %d: %v", ErrCorrupt, seq, err)
	}
	if e.Seq != seq {
		return JournalEntry{}, fmt.Errorf("%w: journal record %d says seq %d", ErrCorrupt, seq, e.Seq)
	}
	if err := e.Posting.Validate(); err != nil {
		return JournalEntry{}, fmt.Errorf("%w: journal %d: %v", ErrCorrupt, seq, err)
	}
	return e, nil
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
