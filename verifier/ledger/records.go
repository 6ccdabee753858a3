package ledger

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/aspen-market/aspen/protocol"
)

// Store namespaces.
const (
	nsJournal = "ledger/journal" // seq (u64 BE) → journal record (binary; JSON in stores written before it)
	nsID      = "ledger/id"      // posting ID → seq (u64 BE)
	nsBalance = "ledger/balance" // account → accountState (16 bytes), as of the checkpoint
	nsMeta    = "ledger/meta"    // "seq" → the checkpoint: the seq the balance records are current as of
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

// Journal records are binary:
//
//	record = 0x02 | uvarint seq | uvarint n | n × uvarint prev | body
//	body   = str id | uvarint time | u8 kind | str memo | n × (account | varint amount)
//	account = u8 1 (external) | u8 2 (operator) | u8 3..5 (consumer, escrow, worker) str peer
//	str    = uvarint length | bytes
//
// The body depends only on the posting, so Post encodes it before the
// posting reaches the committer, which only prepends seq and chain links.
// Records written before this format are JSON (they start with '{') and
// are still read.
const journalBinary = 0x02

var kindCodes = []string{1: KindCredit, 2: KindEscrow, 3: KindRelease, 4: KindSettle, 5: KindPayout, 6: KindWithdraw, 7: KindAdjust}

var acctCodes = []string{1: External, 2: Operator, 3: consumerPrefix, 4: escrowPrefix, 5: workerPrefix}

func appendStr(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// encodeBody encodes the sequence-independent part of a valid posting.
func encodeBody(p *Posting) []byte {
	n := 16 + len(p.ID) + len(p.Memo)
	for _, e := range p.Entries {
		n += 12 + len(e.Account)
	}
	b := appendStr(make([]byte, 0, n), p.ID)
	b = binary.AppendUvarint(b, uint64(p.Time))
	b = append(b, byte(slices.Index(kindCodes, p.Kind)))
	b = appendStr(b, p.Memo)
	for _, e := range p.Entries {
		switch e.Account {
		case External:
			b = append(b, 1)
		case Operator:
			b = append(b, 2)
		default:
			for c := 3; c < len(acctCodes); c++ {
				if peer, ok := strings.CutPrefix(e.Account, acctCodes[c]); ok {
					b = appendStr(append(b, byte(c)), peer)
					break
				}
			}
		}
		b = binary.AppendVarint(b, int64(e.Amount))
	}
	return b
}

// encodeRecord prepends seq and the chain links to an encoded body.
func encodeRecord(seq uint64, prev []uint64, body []byte) []byte {
	b := make([]byte, 0, 1+2*binary.MaxVarintLen64+len(prev)*binary.MaxVarintLen64+len(body))
	b = append(b, journalBinary)
	b = binary.AppendUvarint(b, seq)
	b = binary.AppendUvarint(b, uint64(len(prev)))
	for _, p := range prev {
		b = binary.AppendUvarint(b, p)
	}
	return append(b, body...)
}

func encodeJournal(r *journalRecord) []byte {
	return encodeRecord(r.Seq, r.Prev, encodeBody(&r.Posting))
}

// binReader decodes the binary record; the first problem sticks.
type binReader struct {
	b   []byte
	err error
}

func (r *binReader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("bad %s", what)
	}
	r.b = nil
}

func (r *binReader) uvarint(what string) uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail(what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *binReader) varint(what string) int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail(what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *binReader) byte(what string) byte {
	if len(r.b) == 0 {
		r.fail(what)
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *binReader) str(what string, max int) string {
	n := r.uvarint(what)
	if n > uint64(max) || n > uint64(len(r.b)) {
		r.fail(what)
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func decodeBinary(b []byte) (journalRecord, error) {
	r := binReader{b: b[1:]}
	var jr journalRecord
	jr.Seq = r.uvarint("seq")
	n := r.uvarint("entry count")
	if n > MaxEntries || n > uint64(len(r.b)) {
		return journalRecord{}, fmt.Errorf("bad entry count %d", n)
	}
	jr.Prev = make([]uint64, n)
	for i := range jr.Prev {
		jr.Prev[i] = r.uvarint("chain link")
	}
	jr.ID = r.str("id", MaxIDLen)
	t := r.uvarint("time")
	if t > math.MaxInt64 {
		r.fail("time")
	}
	jr.Time = int64(t)
	if k := int(r.byte("kind")); k > 0 && k < len(kindCodes) {
		jr.Kind = kindCodes[k]
	} else {
		r.fail("kind")
	}
	jr.Memo = r.str("memo", MaxMemoLen)
	jr.Entries = make([]Entry, n)
	for i := range jr.Entries {
		switch c := int(r.byte("account")); {
		case c == 1 || c == 2:
			jr.Entries[i].Account = acctCodes[c]
		case c >= 3 && c < len(acctCodes):
			jr.Entries[i].Account = acctCodes[c] + r.str("peer", MaxPeerLen)
		default:
			r.fail("account")
		}
		jr.Entries[i].Amount = protocol.Micros(r.varint("amount"))
	}
	if r.err != nil {
		return journalRecord{}, r.err
	}
	if len(r.b) != 0 {
		return journalRecord{}, fmt.Errorf("trailing data")
	}
	return jr, nil
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
	var err error
	if len(b) > 0 && b[0] == journalBinary {
		r, err = decodeBinary(b)
	} else {
		err = strictUnmarshal(b, &r)
	}
	if err != nil {
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
