package ledger

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/store"
)

func TestValidateRefusesBadPostings(t *testing.T) {
	ok := escrowPosting("g/1", "alice", 100)
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid posting refused: %v", err)
	}
	mut := func(f func(p *Posting)) Posting {
		p := ok
		p.Entries = cloneEntries(ok.Entries)
		f(&p)
		return p
	}
	cases := map[string]Posting{
		"unbalanced":      mut(func(p *Posting) { p.Entries[1].Amount = 99 }),
		"zero amounts":    mut(func(p *Posting) { p.Entries[0].Amount, p.Entries[1].Amount = 0, 0 }),
		"one entry":       mut(func(p *Posting) { p.Entries = p.Entries[:1] }),
		"same account":    mut(func(p *Posting) { p.Entries[1].Account = p.Entries[0].Account }),
		"unknown account": mut(func(p *Posting) { p.Entries[1].Account = "bank:alice" }),
		"empty peer":      mut(func(p *Posting) { p.Entries[1].Account = "escrow:" }),
		"peer with space": mut(func(p *Posting) { p.Entries[1].Account = "escrow:a b" }),
		"empty ID":        mut(func(p *Posting) { p.ID = "" }),
		"control in ID":   mut(func(p *Posting) { p.ID = "a\nb" }),
		"long memo":       mut(func(p *Posting) { p.Memo = strings.Repeat("m", MaxMemoLen+1) }),
		"negative time":   mut(func(p *Posting) { p.Time = -1 }),
		"unknown kind":    mut(func(p *Posting) { p.Kind = "gift" }),
		"escrow across peers": mut(func(p *Posting) {
			p.Entries[1].Account = EscrowAccount("bob")
		}),
		"credit from a consumer": {ID: "credit/x", Kind: KindCredit, Entries: []Entry{
			{ConsumerAccount("bob"), -5}, {ConsumerAccount("alice"), 5}}},
		"settle refunds someone else": {ID: "settle/x", Kind: KindSettle, Entries: []Entry{
			{EscrowAccount("alice"), -5}, {ConsumerAccount("bob"), 5}}},
		"settle from a consumer": {ID: "settle/x", Kind: KindSettle, Entries: []Entry{
			{ConsumerAccount("alice"), -5}, {WorkerAccount("w"), 5}}},
		"payout to a consumer": {ID: "payout/x", Kind: KindPayout, Entries: []Entry{
			{WorkerAccount("w"), -5}, {ConsumerAccount("alice"), 5}}},
		"adjust without memo": {ID: "adjust/x", Kind: KindAdjust, Entries: []Entry{
			{External, -5}, {Operator, 5}}},
		"overflow": {ID: "adjust/x", Kind: KindAdjust, Memo: "m", Entries: []Entry{
			{External, 1 << 62}, {Operator, 1 << 62}, {WorkerAccount("w"), -(1 << 62)}, {WorkerAccount("v"), -(1 << 62)}}},
	}
	l, _ := openTest(t)
	for name, p := range cases {
		if err := p.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if _, err := l.Post(context.Background(), p); !strings.Contains(fmt.Sprint(err), "invalid") {
			t.Errorf("%s: Post = %v, want ErrInvalid", name, err)
		}
	}
	if js, _ := l.Journal(JournalFilter{}); len(js) != 0 {
		t.Fatalf("refused postings reached the journal: %v", js)
	}
}

func TestSettlementFlowAndQueries(t *testing.T) {
	l, _ := openTest(t)
	ctx := context.Background()
	if applied, err := l.Credit(ctx, "alice", 10_000_000, "pay-1"); err != nil || !applied {
		t.Fatalf("Credit = %v %v", applied, err)
	}
	mustPost(t, l, escrowPosting("g/1", "alice", 3_000_000))
	mustPost(t, l, settlePosting("g/1", "alice", 3_000_000, map[string]protocol.Micros{"w1": 1_000_000, "w2": 900_000}, 100_000))
	mustBalance(t, l, ConsumerAccount("alice"), 8_000_000)
	mustBalance(t, l, EscrowAccount("alice"), 0)
	mustBalance(t, l, WorkerAccount("w1"), 1_000_000)
	mustBalance(t, l, WorkerAccount("w2"), 900_000)
	mustBalance(t, l, Operator, 100_000)
	mustBalance(t, l, External, -10_000_000)
	mustBalance(t, l, WorkerAccount("never"), 0)
	if tot, err := l.Total(); err != nil || tot != 0 {
		t.Fatalf("Total = %s %v", tot, err)
	}
	if err := l.Check(); err != nil {
		t.Fatal(err)
	}
	bs, err := l.Balances()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range bs {
		names = append(names, b.Account)
	}
	if want := "[consumer:alice escrow:alice external operator worker:w1 worker:w2]"; fmt.Sprint(names) != want {
		t.Fatalf("Balances = %v, want %s", names, want)
	}

	ids := func(f JournalFilter) string {
		t.Helper()
		es, err := l.Journal(f)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range es {
			out = append(out, fmt.Sprintf("%d:%s", e.Seq, e.ID))
		}
		return strings.Join(out, " ")
	}
	for _, tc := range []struct {
		f    JournalFilter
		want string
	}{
		{JournalFilter{}, "1:credit/pay-1 2:escrow/g/1 3:settle/g/1"},
		{JournalFilter{After: 1}, "2:escrow/g/1 3:settle/g/1"},
		{JournalFilter{Limit: 2}, "1:credit/pay-1 2:escrow/g/1"},
		{JournalFilter{Before: 3}, "1:credit/pay-1 2:escrow/g/1"},
		{JournalFilter{Newest: true, Limit: 2}, "3:settle/g/1 2:escrow/g/1"},
		{JournalFilter{Newest: true, Before: 3}, "2:escrow/g/1 1:credit/pay-1"},
		{JournalFilter{Newest: true, After: 1}, "3:settle/g/1 2:escrow/g/1"},
		{JournalFilter{Account: WorkerAccount("w1")}, "3:settle/g/1"},
		{JournalFilter{Account: ConsumerAccount("alice")}, "1:credit/pay-1 2:escrow/g/1 3:settle/g/1"},
		{JournalFilter{Account: ConsumerAccount("alice"), After: 1, Limit: 1}, "2:escrow/g/1"},
		{JournalFilter{Account: ConsumerAccount("alice"), Newest: true, Before: 3}, "2:escrow/g/1 1:credit/pay-1"},
		{JournalFilter{Account: WorkerAccount("nobody")}, ""},
	} {
		if got := ids(tc.f); got != tc.want {
			t.Errorf("Journal(%+v) = %q, want %q", tc.f, got, tc.want)
		}
	}
	e, err := l.Lookup("settle/g/1")
	if err != nil || e.Seq != 3 || e.Kind != KindSettle || len(e.Entries) != 5 {
		t.Fatalf("Lookup = %+v %v", e, err)
	}
	_, err = l.Lookup("settle/none")
	mustErrIs(t, err, ErrNotFound)
}

func TestPostIsIdempotentAndDetectsConflicts(t *testing.T) {
	l, _ := openTest(t)
	ctx := context.Background()
	p := CreditPosting("pay-1", 1000, "alice", 5_000_000)
	mustPost(t, l, p)
	// The same posting again, even re-stamped with another time and memo
	// (as after a restart), is a no-op.
	again := p
	again.Time, again.Memo = 99999, "re-posted after restart"
	again.Entries = []Entry{p.Entries[1], p.Entries[0]} // order does not matter
	for _, q := range []Posting{p, again} {
		if applied, err := l.Post(ctx, q); err != nil || applied {
			t.Fatalf("replay: applied=%v err=%v", applied, err)
		}
	}
	mustBalance(t, l, ConsumerAccount("alice"), 5_000_000)
	// Same ID, different money: refused.
	other := CreditPosting("pay-1", 1000, "alice", 6_000_000)
	_, err := l.Post(ctx, other)
	mustErrIs(t, err, ErrConflict)
	mustBalance(t, l, ConsumerAccount("alice"), 5_000_000)
	// In a batch, a duplicate of an earlier posting of the same batch is a
	// no-op too; a conflicting one fails the whole batch.
	e1 := escrowPosting("g/1", "alice", 100)
	if err := l.PostBatch(ctx, []Posting{e1, e1}); err != nil {
		t.Fatal(err)
	}
	mustBalance(t, l, EscrowAccount("alice"), 100)
	e2 := escrowPosting("g/2", "alice", 100)
	e2bad := escrowPosting("g/2", "alice", 200)
	mustErrIs(t, l.PostBatch(ctx, []Posting{e2, e2bad}), ErrConflict)
	mustBalance(t, l, EscrowAccount("alice"), 100)
	if js, _ := l.Journal(JournalFilter{}); len(js) != 2 {
		t.Fatalf("journal has %d entries, want 2", len(js))
	}
	if err := l.Check(); err != nil {
		t.Fatal(err)
	}
}

func TestInsufficientFundsIsAClearRefusal(t *testing.T) {
	l, _ := openTest(t)
	ctx := context.Background()
	mustPost(t, l, CreditPosting("c", 1, "alice", 1_000_000))
	_, err := l.Post(ctx, escrowPosting("g/1", "alice", 1_500_000))
	mustErrIs(t, err, ErrInsufficientFunds)
	for _, want := range []string{"consumer:alice", "1.00", "1.50", "escrow/g/1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	// A consumer who never paid anything is refused too.
	_, err = l.Post(ctx, escrowPosting("g/2", "mallory", 1))
	mustErrIs(t, err, ErrInsufficientFunds)
	// Escrow and workers cannot be overdrawn either.
	_, err = l.Post(ctx, settlePosting("g/3", "alice", 10, map[string]protocol.Micros{"w": 10}, 0))
	mustErrIs(t, err, ErrInsufficientFunds)
	_, err = l.Post(ctx, Posting{ID: "payout/x", Kind: KindPayout, Entries: []Entry{{WorkerAccount("w"), -1}, {External, 1}}})
	mustErrIs(t, err, ErrInsufficientFunds)
	mustBalance(t, l, ConsumerAccount("alice"), 1_000_000)
	if js, _ := l.Journal(JournalFilter{}); len(js) != 1 {
		t.Fatalf("refused postings reached the journal: %d entries", len(js))
	}
	// A refused batch applies nothing, not even its valid first posting.
	err = l.PostBatch(ctx, []Posting{escrowPosting("g/4", "alice", 600_000), escrowPosting("g/5", "alice", 600_000)})
	mustErrIs(t, err, ErrInsufficientFunds)
	mustBalance(t, l, ConsumerAccount("alice"), 1_000_000)
	if err := l.Check(); err != nil {
		t.Fatal(err)
	}
}

func TestPayoutBatches(t *testing.T) {
	l, _ := openTest(t)
	ctx := context.Background()
	mustPost(t, l, CreditPosting("c", 1, "alice", 100_000_000))
	mustPost(t, l, escrowPosting("g/1", "alice", 50_000_000))
	mustPost(t, l, settlePosting("g/1", "alice", 50_000_000,
		map[string]protocol.Micros{"wa": 20_000_000, "wb": 5_000_000, "wc": 4_999_999}, 1_000_000))
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixMilli()
	b, err := l.Payout(ctx, 5_000_000, "2026-03", now)
	if err != nil {
		t.Fatal(err)
	}
	if b.Total != 25_000_000 || len(b.Lines) != 2 || b.Lines[0] != (PayoutLine{"wa", 20_000_000}) || b.Lines[1] != (PayoutLine{"wb", 5_000_000}) {
		t.Fatalf("batch = %+v", b)
	}
	mustBalance(t, l, WorkerAccount("wa"), 0)
	mustBalance(t, l, WorkerAccount("wb"), 0)
	mustBalance(t, l, WorkerAccount("wc"), 4_999_999) // below the threshold
	mustBalance(t, l, External, -75_000_000)
	// Closing the same batch again changes nothing and returns it.
	b2, err := l.Payout(ctx, 1, "2026-03", now+1)
	if err != nil || fmt.Sprint(b2) != fmt.Sprint(b) {
		t.Fatalf("repeat Payout = %+v %v", b2, err)
	}
	mustBalance(t, l, WorkerAccount("wc"), 4_999_999)
	// A batch with nobody above the threshold is recorded empty.
	empty, err := l.Payout(ctx, 10_000_000, "2026-04", now+10)
	if err != nil || len(empty.Lines) != 0 || empty.Total != 0 {
		t.Fatalf("empty batch = %+v %v", empty, err)
	}
	all, err := l.Batches()
	if err != nil || len(all) != 2 || all[0].ID != "2026-03" || all[1].ID != "2026-04" {
		t.Fatalf("Batches = %+v %v", all, err)
	}
	if got, err := l.Batch("2026-03"); err != nil || fmt.Sprint(got) != fmt.Sprint(b) {
		t.Fatalf("Batch = %+v %v", got, err)
	}
	_, err = l.Batch("nope")
	mustErrIs(t, err, ErrNotFound)
	_, err = l.Payout(ctx, 0, "x", now)
	mustErrIs(t, err, ErrInvalid)
	if err := l.Check(); err != nil {
		t.Fatal(err)
	}

	var buf bytes.Buffer
	if err := WriteBatchCSV(&buf, b); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"batch", "time", "worker", "amount", "amount_micros"},
		{"2026-03", "2026-03-01T12:00:00Z", "wa", "20.00", "20000000"},
		{"2026-03", "2026-03-01T12:00:00Z", "wb", "5.00", "5000000"},
	}
	if fmt.Sprint(rows) != fmt.Sprint(want) {
		t.Fatalf("CSV = %v, want %v", rows, want)
	}
	buf.Reset()
	if err := WriteBatchJSON(&buf, b); err != nil {
		t.Fatal(err)
	}
	var js struct {
		ID    string `json:"id"`
		Total string `json:"total"`
		Lines []struct {
			Worker       string `json:"worker"`
			Amount       string `json:"amount"`
			AmountMicros int64  `json:"amount_micros"`
		} `json:"lines"`
	}
	if err := json.Unmarshal(buf.Bytes(), &js); err != nil {
		t.Fatal(err)
	}
	if js.ID != "2026-03" || js.Total != "25.00" || len(js.Lines) != 2 || js.Lines[1].Amount != "5.00" || js.Lines[1].AmountMicros != 5_000_000 {
		t.Fatalf("JSON = %s", buf.String())
	}
}

func TestCheckDetectsTampering(t *testing.T) {
	l, st := openTest(t)
	mustPost(t, l, CreditPosting("c", 1, "alice", 1000))
	if err := l.Check(); err != nil {
		t.Fatal(err)
	}
	alice := []byte(ConsumerAccount("alice"))
	// A balance record the checkpoint (none yet) does not account for.
	if err := st.Put(nsBalance, alice, encodeAccount(accountState{Balance: 1000, Last: 1})); err != nil {
		t.Fatal(err)
	}
	mustErrIs(t, l.Check(), ErrInconsistent)
	if err := st.Delete(nsBalance, alice); err != nil {
		t.Fatal(err)
	}
	if err := l.Check(); err != nil {
		t.Fatal(err)
	}
	// The next posting writes a checkpoint; then tamper with it.
	l.b.every = 1
	mustPost(t, l, CreditPosting("d", 1, "alice", 500))
	if raw, err := st.Get(nsBalance, alice); err != nil || string(raw) != string(encodeAccount(accountState{Balance: 1500, Last: 2})) {
		t.Fatalf("checkpoint of alice: %x %v", raw, err)
	}
	if err := l.Check(); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(nsBalance, alice, encodeAccount(accountState{Balance: 2000, Last: 2})); err != nil {
		t.Fatal(err)
	}
	mustErrIs(t, l.Check(), ErrInconsistent)
	if err := st.Put(nsBalance, alice, encodeAccount(accountState{Balance: 1500, Last: 2})); err != nil {
		t.Fatal(err)
	}
	if err := l.Check(); err != nil {
		t.Fatal(err)
	}
	// The balances in memory.
	l.b.mu.Lock()
	good := l.b.acct[string(alice)]
	l.b.acct[string(alice)] = accountState{Balance: 1400, Last: 2}
	l.b.mu.Unlock()
	mustErrIs(t, l.Check(), ErrInconsistent)
	l.b.mu.Lock()
	l.b.acct[string(alice)] = good
	l.b.mu.Unlock()
	if err := l.Check(); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(nsID, []byte("credit/c")); err != nil {
		t.Fatal(err)
	}
	mustErrIs(t, l.Check(), ErrInconsistent)
}

// TestOpenReplaysAfterCheckpoint: balances survive a restart whether the
// last postings were checkpointed or must be replayed from the journal,
// and a second Ledger of the same store shares the first one's balances.
func TestOpenReplaysAfterCheckpoint(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir, nil)
	l, err := Open(st, Config{})
	if err != nil {
		t.Fatal(err)
	}
	l.b.every = 5
	ctx := context.Background()
	mustPost(t, l, CreditPosting("seed", 1, "alice", 1_000_000))
	for i := range 13 {
		if err := l.PostBatch(ctx, []Posting{
			escrowPosting(fmt.Sprint(i), "alice", 1000),
			settlePosting(fmt.Sprint(i), "alice", 1000, map[string]protocol.Micros{fmt.Sprintf("w%d", i%3): 600}, 100),
		}); err != nil {
			t.Fatal(err)
		}
	}
	other, err := Open(st, Config{})
	if err != nil {
		t.Fatal(err)
	}
	mustBalance(t, other, ConsumerAccount("alice"), 1_000_000-13*700)
	mustPost(t, other, CreditPosting("more", 1, "bob", 7))
	mustBalance(t, l, ConsumerAccount("bob"), 7)
	want, _ := l.Balances()
	if ckpt := l.b.ckpt; ckpt == 0 || ckpt == l.b.seq {
		t.Fatalf("checkpoint at %d of %d: want one with postings after it", ckpt, l.b.seq)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = openStore(t, dir, nil)
	defer st.Close()
	l, err = Open(st, Config{})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := l.Balances()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after reopen:\n%v\nwant\n%v", got, want)
	}
	if err := l.Check(); err != nil {
		t.Fatal(err)
	}
	js, err := l.Journal(JournalFilter{Account: WorkerAccount("w1"), Newest: true, Limit: 2})
	if err != nil || len(js) != 2 || js[0].Seq <= js[1].Seq {
		t.Fatalf("worker journal: %v %v", js, err)
	}
}

// TestReadsJSONJournal: a store written before the binary journal (JSON
// records, balances current at every posting, meta seq = last posting) is
// read, checked and extended.
func TestReadsJSONJournal(t *testing.T) {
	old := openStore(t, t.TempDir(), nil)
	defer old.Close()
	p := CreditPosting("old", 1, "alice", 900)
	rec := journalRecord{JournalEntry: JournalEntry{Seq: 1, Posting: p}, Prev: []uint64{0, 0}}
	raw, err := json.Marshal(&rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Update(func(tx *store.Tx) error {
		_ = tx.Put(nsJournal, seqKey(1), raw)
		_ = tx.Put(nsID, []byte(p.ID), seqKey(1))
		_ = tx.Put(nsBalance, []byte(External), encodeAccount(accountState{Balance: -900, Last: 1}))
		_ = tx.Put(nsBalance, []byte(ConsumerAccount("alice")), encodeAccount(accountState{Balance: 900, Last: 1}))
		return tx.Put(nsMeta, seqKeyName, seqKey(1))
	}); err != nil {
		t.Fatal(err)
	}
	ol, err := Open(old, Config{})
	if err != nil {
		t.Fatal(err)
	}
	mustBalance(t, ol, ConsumerAccount("alice"), 900)
	if applied, err := ol.Post(context.Background(), p); err != nil || applied {
		t.Fatalf("replay of the old posting: %v %v", applied, err)
	}
	mustPost(t, ol, escrowPosting("g/1", "alice", 400))
	if err := ol.Check(); err != nil {
		t.Fatal(err)
	}
	js, err := ol.Journal(JournalFilter{Account: ConsumerAccount("alice")})
	if err != nil || len(js) != 2 || js[0].ID != p.ID {
		t.Fatalf("journal: %+v %v", js, err)
	}
}

// TestConcurrentFailuresLeaveNoTrace: postings refused after others were
// written to the same group-commit transaction (which is then discarded and
// its good postings run again) change nothing, while every good posting
// lands exactly once.
func TestConcurrentFailuresLeaveNoTrace(t *testing.T) {
	l, _ := openTest(t)
	l.b.every, l.b.maxDirty = 7, 5
	ctx := context.Background()
	const consumers, tasks = 4, 40
	for c := range consumers {
		mustPost(t, l, CreditPosting(fmt.Sprint(c), 1, fmt.Sprintf("c%d", c), 1_000_000))
	}
	var wg sync.WaitGroup
	for c := range consumers {
		for k := range tasks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cons := fmt.Sprintf("c%d", c)
				id := fmt.Sprintf("%d/%d", c, k)
				if k%3 == 0 {
					err := l.PostBatch(ctx, []Posting{
						CreditPosting("x/"+id, 1, cons, 5),
						escrowPosting("x/"+id, cons, 1<<40),
					})
					if !errors.Is(err, ErrInsufficientFunds) {
						t.Errorf("unaffordable batch %s: %v", id, err)
					}
					return
				}
				if err := l.PostBatch(ctx, []Posting{
					escrowPosting(id, cons, 1000),
					settlePosting(id, cons, 1000, map[string]protocol.Micros{fmt.Sprintf("w%d", k%3): 600}, 100),
				}); err != nil {
					t.Error(err)
				}
			}()
		}
	}
	wg.Wait()
	good := 0
	for k := range tasks {
		if k%3 != 0 {
			good++
		}
	}
	mustBalance(t, l, Operator, protocol.Micros(consumers*good*100))
	for c := range consumers {
		mustBalance(t, l, ConsumerAccount(fmt.Sprintf("c%d", c)), protocol.Micros(1_000_000-good*700))
	}
	if err := l.Check(); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentSettlements(t *testing.T) {
	l, _ := openTest(t)
	ctx := context.Background()
	const consumers, tasks = 8, 30
	for c := range consumers {
		mustPost(t, l, CreditPosting(fmt.Sprint(c), 1, fmt.Sprintf("c%d", c), 1_000_000))
	}
	var wg sync.WaitGroup
	for c := range consumers {
		for k := range tasks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cons := fmt.Sprintf("c%d", c)
				id := fmt.Sprintf("%d/%d", c, k)
				if err := l.PostBatch(ctx, []Posting{
					escrowPosting(id, cons, 1000),
					settlePosting(id, cons, 1000, map[string]protocol.Micros{fmt.Sprintf("w%d", k%3): 600}, 100),
				}); err != nil {
					t.Error(err)
				}
			}()
		}
	}
	wg.Wait()
	mustBalance(t, l, Operator, consumers*tasks*100)
	for c := range consumers {
		mustBalance(t, l, ConsumerAccount(fmt.Sprintf("c%d", c)), 1_000_000-tasks*700)
	}
	if err := l.Check(); err != nil {
		t.Fatal(err)
	}
}
