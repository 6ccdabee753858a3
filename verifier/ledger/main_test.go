package ledger

import (
	"context"
	"errors"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/store"
)

// crashChildEnv selects the child role of TestKill9 (crash_test.go).
const crashChildEnv = "ASPEN_LEDGER_CRASH_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		os.Exit(crashChild(dir))
	}
	goleak.VerifyTestMain(m)
}

// openStore opens a store in dir; the caller closes it.
func openStore(tb testing.TB, dir string, mutate func(*store.Config)) *store.Store {
	tb.Helper()
	cfg := store.DefaultConfig()
	cfg.Dir = dir
	if mutate != nil {
		mutate(&cfg)
	}
	st, err := store.Open(cfg)
	if err != nil {
		tb.Fatalf("store.Open: %v", err)
	}
	return st
}

// openTest opens a ledger over a fresh store closed at the end of the test.
func openTest(tb testing.TB) (*Ledger, *store.Store) {
	tb.Helper()
	st := openStore(tb, tb.TempDir(), nil)
	tb.Cleanup(func() {
		if err := st.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	l, err := Open(st, Config{})
	if err != nil {
		tb.Fatal(err)
	}
	return l, st
}

func mustErrIs(tb testing.TB, err, target error) {
	tb.Helper()
	if !errors.Is(err, target) {
		tb.Fatalf("error %v, want one wrapping %v", err, target)
	}
}

func mustPost(tb testing.TB, l *Ledger, p Posting) {
	tb.Helper()
	applied, err := l.Post(context.Background(), p)
	if err != nil || !applied {
		tb.Fatalf("Post(%s) = %v, %v", p.ID, applied, err)
	}
}

func mustBalance(tb testing.TB, l *Ledger, acct string, want protocol.Micros) {
	tb.Helper()
	got, err := l.Balance(acct)
	if err != nil || got != want {
		tb.Fatalf("Balance(%s) = %s, %v; want %s", acct, got, err, want)
	}
}

// escrowPosting and settlePosting build postings the way the verifier does.
func escrowPosting(id string, consumer string, amount protocol.Micros) Posting {
	return Posting{ID: "escrow/" + id, Time: 1, Kind: KindEscrow, Entries: []Entry{
		{ConsumerAccount(consumer), -amount}, {EscrowAccount(consumer), amount}}}
}

// settlePosting releases escrowed: pay to each worker, cut to the operator,
// the rest back to the consumer.
func settlePosting(id, consumer string, escrowed protocol.Micros, pay map[string]protocol.Micros, cut protocol.Micros) Posting {
	p := Posting{ID: "settle/" + id, Time: 2, Kind: KindSettle, Entries: []Entry{{EscrowAccount(consumer), -escrowed}}}
	rest := escrowed - cut
	for w, a := range pay {
		if a > 0 {
			p.Entries = append(p.Entries, Entry{WorkerAccount(w), a})
			rest -= a
		}
	}
	if cut > 0 {
		p.Entries = append(p.Entries, Entry{Operator, cut})
	}
	if rest > 0 {
		p.Entries = append(p.Entries, Entry{ConsumerAccount(consumer), rest})
	}
	return p
}
