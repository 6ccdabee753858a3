package ledger

import (
	"bytes"
	"testing"

	"github.com/aspen-market/aspen/protocol"
)

// FuzzDecodeJournal feeds arbitrary bytes to the journal record decoder:
// it must not panic, and what it accepts must be a valid, balanced posting
// that re-encodes to a record decoding to the same posting.
func FuzzDecodeJournal(f *testing.F) {
	p := settlePosting("g/1", "alice", 1000, map[string]protocol.Micros{"w": 600}, 100)
	f.Add(uint64(1), encodeJournal(&journalRecord{JournalEntry{Seq: 1, Posting: p}, make([]uint64, len(p.Entries))}))
	f.Add(uint64(7), encodeJournal(&journalRecord{JournalEntry{Seq: 7, Posting: CreditPosting("x", 5, "bob", 1)}, []uint64{3, 6}}))
	f.Add(uint64(2), []byte(`{"seq":2,"id":"a","time":0,"kind":"credit","entries":[{"account":"external","amount":-1},{"account":"consumer:b","amount":1}],"prev":[1,0]}`))
	f.Add(uint64(1), []byte(`{"seq":1,"id":"a","kind":"adjust","memo":"m","entries":[{"account":"external","amount":9223372036854775807},{"account":"operator","amount":1}]}`))
	f.Add(uint64(2), []byte(`{}`))
	f.Fuzz(func(t *testing.T, seq uint64, b []byte) {
		e, err := decodeJournal(seq, b)
		if err != nil {
			return
		}
		if e.Seq != seq {
			t.Fatalf("accepted seq %d under key %d", e.Seq, seq)
		}
		var sum protocol.Micros
		for i, en := range e.Entries {
			sum += en.Amount
			if e.Prev[i] >= seq {
				t.Fatalf("accepted a chain link pointing forward: %+v", e)
			}
		}
		if sum != 0 {
			t.Fatalf("accepted unbalanced posting %+v", e)
		}
		again := encodeJournal(&e)
		e2, err := decodeJournal(seq, again)
		if err != nil {
			t.Fatalf("re-encoded record refused: %v", err)
		}
		if !bytes.Equal(encodeJournal(&e2), again) {
			t.Fatalf("round trip not stable")
		}
	})
}

// FuzzDecodeBatch does the same for stored payout batches.
func FuzzDecodeBatch(f *testing.F) {
	b := Batch{ID: "2026-03", Time: 5, Threshold: 10, Lines: []PayoutLine{{"wa", 20}, {"wb", 10}}, Total: 30}
	f.Add(encodeBatch(&b))
	f.Add(encodeBatch(&Batch{ID: "e", Threshold: 1, Lines: []PayoutLine{}}))
	f.Add([]byte(`{"id":"x","time":1,"threshold":1,"lines":[{"worker":"w","amount":1}],"total":2}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		b, err := decodeBatch(raw)
		if err != nil {
			return
		}
		var sum protocol.Micros
		for _, ln := range b.Lines {
			if ln.Amount < b.Threshold {
				t.Fatalf("accepted a line below the threshold: %+v", b)
			}
			sum += ln.Amount
		}
		if sum != b.Total {
			t.Fatalf("accepted a batch whose lines do not sum to its total: %+v", b)
		}
		if len(b.Lines) > 0 {
			p := b.posting()
			if err := p.Validate(); err != nil {
				t.Fatalf("accepted batch has an invalid posting: %v", err)
			}
		}
		b2, err := decodeBatch(encodeBatch(&b))
		if err != nil || !bytes.Equal(encodeBatch(&b2), encodeBatch(&b)) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
