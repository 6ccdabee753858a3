package ledger

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"testing"

	"pgregory.net/rapid"

	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/store"
)

// ledgerModel runs random sequences of operations against a real ledger
// (real badger, reopened now and then) and a plain map model of it.
type ledgerModel struct {
	dir string
	st  *store.Store
	l   *Ledger

	bal      map[string]protocol.Micros // expected balances
	inside   protocol.Micros            // credits − payouts: money in non-external accounts
	applied  []Posting                  // postings applied, in order
	appliedN int                        // len(applied) + postings applied by payouts
	nextID   int
	batches  map[string]Batch
}

var (
	propConsumers = []string{"c0", "c1", "c2"}
	propWorkers   = []string{"w0", "w1", "w2", "w3"}
)

func (m *ledgerModel) open(t *rapid.T) {
	cfg := store.DefaultConfig()
	cfg.Dir = m.dir
	var err error
	if m.st, err = store.Open(cfg); err != nil {
		t.Fatal(err)
	}
	if m.l, err = Open(m.st, Config{}); err != nil {
		t.Fatal(err)
	}
	// Checkpoints of the balances every few postings (or few changed
	// accounts), so restarts replay the journal after one.
	m.l.b.every = rapid.IntRange(1, 8).Draw(t, "checkpoint every")
	m.l.b.maxDirty = rapid.IntRange(1, 12).Draw(t, "checkpoint after accounts")
}

func (m *ledgerModel) id(kind string) string {
	m.nextID++
	return fmt.Sprintf("%s/%d", kind, m.nextID)
}

// post posts p and checks the outcome against the model: it must be
// applied iff no non-negative account would go negative.
func (m *ledgerModel) post(t *rapid.T, p Posting) {
	want := true
	for _, e := range p.Entries {
		if e.Account != External && m.bal[e.Account]+e.Amount < 0 {
			want = false
		}
	}
	applied, err := m.l.Post(context.Background(), p)
	if !want {
		if !errors.Is(err, ErrInsufficientFunds) || applied {
			t.Fatalf("%s should be refused for insufficient funds: applied=%v err=%v", p.ID, applied, err)
		}
		return
	}
	if err != nil || !applied {
		t.Fatalf("%s: applied=%v err=%v", p.ID, applied, err)
	}
	m.apply(p)
}

func (m *ledgerModel) apply(p Posting) {
	for _, e := range p.Entries {
		m.bal[e.Account] += e.Amount
	}
	switch p.Kind {
	case KindCredit:
		m.inside += p.Entries[1].Amount
	}
	m.applied = append(m.applied, p)
	m.appliedN++
}

func (m *ledgerModel) amount(t *rapid.T, max protocol.Micros, label string) protocol.Micros {
	// Mostly affordable amounts, sometimes more than there is.
	hi := int64(max) + int64(max)/4 + 1
	return protocol.Micros(rapid.Int64Range(1, hi).Draw(t, label))
}

func (m *ledgerModel) credit(t *rapid.T) {
	c := rapid.SampledFrom(propConsumers).Draw(t, "consumer")
	a := protocol.Micros(rapid.Int64Range(1, 5_000_000).Draw(t, "amount"))
	m.post(t, CreditPosting(m.id("credit"), 1, c, a))
}

func (m *ledgerModel) escrow(t *rapid.T) {
	c := rapid.SampledFrom(propConsumers).Draw(t, "consumer")
	a := m.amount(t, m.bal[ConsumerAccount(c)], "amount")
	m.post(t, Posting{ID: m.id("escrow"), Time: 2, Kind: KindEscrow,
		Entries: []Entry{{ConsumerAccount(c), -a}, {EscrowAccount(c), a}}})
}

func (m *ledgerModel) settle(t *rapid.T) {
	c := rapid.SampledFrom(propConsumers).Draw(t, "consumer")
	e := m.amount(t, m.bal[EscrowAccount(c)], "escrowed")
	pay := map[string]protocol.Micros{}
	left := e
	for _, w := range propWorkers {
		if left == 0 || !rapid.Bool().Draw(t, "pay "+w) {
			continue
		}
		a := protocol.Micros(rapid.Int64Range(0, int64(left)).Draw(t, "pay"))
		pay[w] = a
		left -= a
	}
	cut := protocol.Micros(rapid.Int64Range(0, int64(left)).Draw(t, "cut"))
	p := settlePosting(m.id("settle")[len("settle/"):], c, e, pay, cut)
	if len(p.Entries) < 2 {
		return
	}
	sort.Slice(p.Entries, func(i, j int) bool { return p.Entries[i].Account < p.Entries[j].Account })
	m.post(t, p)
}

func (m *ledgerModel) release(t *rapid.T) {
	c := rapid.SampledFrom(propConsumers).Draw(t, "consumer")
	a := m.amount(t, m.bal[EscrowAccount(c)], "amount")
	m.post(t, Posting{ID: m.id("release"), Time: 3, Kind: KindRelease,
		Entries: []Entry{{EscrowAccount(c), -a}, {ConsumerAccount(c), a}}})
}

func (m *ledgerModel) batch(t *rapid.T) {
	// escrow + settle of one task in one atomic batch; when the escrow is
	// unaffordable neither may be applied.
	c := rapid.SampledFrom(propConsumers).Draw(t, "consumer")
	a := m.amount(t, m.bal[ConsumerAccount(c)], "amount")
	w := rapid.SampledFrom(propWorkers).Draw(t, "worker")
	id := m.id("task")
	ps := []Posting{
		{ID: "escrow/" + id, Time: 4, Kind: KindEscrow, Entries: []Entry{{ConsumerAccount(c), -a}, {EscrowAccount(c), a}}},
		{ID: "settle/" + id, Time: 4, Kind: KindSettle, Entries: []Entry{{EscrowAccount(c), -a}, {WorkerAccount(w), a}}},
	}
	err := m.l.PostBatch(context.Background(), ps)
	if a > m.bal[ConsumerAccount(c)] {
		if !errors.Is(err, ErrInsufficientFunds) {
			t.Fatalf("unaffordable batch: %v", err)
		}
		return
	}
	if err != nil {
		t.Fatalf("batch: %v", err)
	}
	m.apply(ps[0])
	m.apply(ps[1])
}

// failedBatch: a credit followed by an unaffordable escrow in one atomic
// batch; the credit was written to the transaction before the escrow was
// refused, and must leave no trace.
func (m *ledgerModel) failedBatch(t *rapid.T) {
	c := rapid.SampledFrom(propConsumers).Draw(t, "consumer")
	a := protocol.Micros(rapid.Int64Range(1, 1000).Draw(t, "amount"))
	id := m.id("failed")
	over := m.bal[ConsumerAccount(c)] + a + 1
	err := m.l.PostBatch(context.Background(), []Posting{
		CreditPosting(id, 1, c, a),
		{ID: "escrow/" + id, Time: 4, Kind: KindEscrow, Entries: []Entry{{ConsumerAccount(c), -over}, {EscrowAccount(c), over}}},
	})
	if !errors.Is(err, ErrInsufficientFunds) {
		t.Fatalf("batch with an unaffordable escrow: %v", err)
	}
	if _, err := m.l.Lookup("credit/" + id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("credit of a failed batch: %v", err)
	}
}

func (m *ledgerModel) replay(t *rapid.T) {
	if len(m.applied) == 0 {
		t.Skip("nothing to replay")
	}
	p := rapid.SampledFrom(m.applied).Draw(t, "posting")
	p.Time += 1000
	p.Memo = "replayed"
	applied, err := m.l.Post(context.Background(), p)
	if err != nil || applied {
		t.Fatalf("replay of %s: applied=%v err=%v", p.ID, applied, err)
	}
}

func (m *ledgerModel) conflict(t *rapid.T) {
	if len(m.applied) == 0 {
		t.Skip("nothing to conflict with")
	}
	p := rapid.SampledFrom(m.applied).Draw(t, "posting")
	// Same ID, every amount doubled: still valid, different money.
	q := p
	q.Entries = nil
	for _, e := range p.Entries {
		q.Entries = append(q.Entries, Entry{e.Account, e.Amount * 2})
	}
	if _, err := m.l.Post(context.Background(), q); !errors.Is(err, ErrConflict) {
		t.Fatalf("conflicting %s: %v", p.ID, err)
	}
}

func (m *ledgerModel) payout(t *rapid.T) {
	th := protocol.Micros(rapid.Int64Range(1, 3_000_000).Draw(t, "threshold"))
	id := m.id("batch")
	b, err := m.l.Payout(context.Background(), th, id, 5)
	if err != nil {
		t.Fatal(err)
	}
	var want []PayoutLine
	var total protocol.Micros
	for _, w := range propWorkers {
		if a := m.bal[WorkerAccount(w)]; a >= th {
			want = append(want, PayoutLine{w, a})
			total += a
		}
	}
	if fmt.Sprint(b.Lines) != fmt.Sprint(want) && !(len(b.Lines) == 0 && len(want) == 0) || b.Total != total {
		t.Fatalf("payout %s = %+v, want lines %v total %s", id, b, want, total)
	}
	for _, ln := range b.Lines {
		m.bal[WorkerAccount(ln.Worker)] = 0
	}
	m.bal[External] += total
	m.inside -= total
	if total > 0 {
		m.appliedN++
	}
	m.batches[id] = b
	// Closing it again is a no-op.
	again, err := m.l.Payout(context.Background(), 1, id, 6)
	if err != nil || fmt.Sprint(again) != fmt.Sprint(b) {
		t.Fatalf("repeat payout %s: %+v %v", id, again, err)
	}
}

func (m *ledgerModel) reopen(t *rapid.T) {
	// A restart is slow (badger open); keep it to about one step in forty.
	if rapid.IntRange(0, 3).Draw(t, "restart now") != 0 {
		t.Skip("no restart this time")
	}
	if err := m.st.Close(); err != nil {
		t.Fatal(err)
	}
	m.open(t)
}

// check asserts the invariants after every step.
func (m *ledgerModel) check(t *rapid.T) {
	tot, err := m.l.Total()
	if err != nil || tot != 0 {
		t.Fatalf("Total = %s, %v; money was created or lost", tot, err)
	}
	bs, err := m.l.Balances()
	if err != nil {
		t.Fatal(err)
	}
	var inside protocol.Micros
	for _, b := range bs {
		if b.Balance != m.bal[b.Account] {
			t.Fatalf("%s = %s, model %s", b.Account, b.Balance, m.bal[b.Account])
		}
		if b.Account != External {
			inside += b.Balance
			if b.Balance < 0 {
				t.Fatalf("%s is negative: %s", b.Account, b.Balance)
			}
		}
	}
	if inside != m.inside {
		t.Fatalf("money inside = %s, credits − payouts = %s", inside, m.inside)
	}
	js, err := m.l.Journal(JournalFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(js) != m.appliedN {
		t.Fatalf("journal has %d postings, %d were applied", len(js), m.appliedN)
	}
	seen := map[string]bool{}
	for _, e := range js {
		if seen[e.ID] {
			t.Fatalf("posting %s applied twice", e.ID)
		}
		seen[e.ID] = true
	}
	if err := m.l.Check(); err != nil {
		t.Fatal(err)
	}
	batches, err := m.l.Batches()
	if err != nil || len(batches) != len(m.batches) {
		t.Fatalf("Batches = %d, %v; want %d", len(batches), err, len(m.batches))
	}
}

func TestLedgerProperties(t *testing.T) {
	parent := t.TempDir()
	rapid.Check(t, func(t *rapid.T) {
		dir, err := os.MkdirTemp(parent, "prop")
		if err != nil {
			t.Fatal(err)
		}
		m := &ledgerModel{dir: dir, bal: map[string]protocol.Micros{}, batches: map[string]Batch{}}
		m.open(t)
		defer func() {
			_ = m.st.Close()
			_ = os.RemoveAll(dir)
		}()
		t.Repeat(map[string]func(*rapid.T){
			"credit":   m.credit,
			"escrow":   m.escrow,
			"settle":   m.settle,
			"release":  m.release,
			"batch":    m.batch,
			"failed":   m.failedBatch,
			"replay":   m.replay,
			"conflict": m.conflict,
			"payout":   m.payout,
			"reopen":   m.reopen,
			"":         m.check,
		})
	})
}
