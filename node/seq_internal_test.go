package node

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/aspen-market/aspen/store"
)

// TestGossipSeqSurvivesRestartAndClockSetBack: Seqs keep increasing over
// reopenings of the same store, also when the clock reads an hour earlier
// after the restart, and the ceiling is written about once per reserve,
// not once per Seq.
func TestGossipSeqSurvivesRestartAndClockSetBack(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	clock := time.Unix(1_800_000_000, 0)
	now := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return clock
	}
	advance := func(d time.Duration) {
		mu.Lock()
		clock = clock.Add(d)
		mu.Unlock()
	}
	open := func() (*store.Store, *gossipSeq) {
		cfg := store.DefaultConfig()
		cfg.Dir = dir
		st, err := store.Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		g, err := loadGossipSeq(st, now)
		if err != nil {
			t.Fatal(err)
		}
		return st, g
	}
	ctx := context.Background()
	st, g := open()
	var last uint64
	take := func(g *gossipSeq) uint64 {
		t.Helper()
		s, err := g.next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if s <= last {
			t.Fatalf("seq %d after %d", s, last)
		}
		last = s
		return s
	}
	syncs0 := st.Stats().Syncs
	for i := 0; i < 1000; i++ { // the clock does not move: +1 each
		take(g)
	}
	for i := 0; i < 30; i++ { // 30 s of offers, one a second
		advance(time.Second)
		take(g)
	}
	if n := st.Stats().Syncs - syncs0; n > 2 {
		t.Errorf("%d ceiling writes for 1,030 Seqs within a minute", n)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	// Restart with the clock an hour behind: still above the last Seq.
	advance(-time.Hour)
	st, g = open()
	defer st.Close()
	first := take(g)
	if first > last+seqReserve+1 {
		t.Fatalf("restarted at %d, more than the reserve above %d", first, last)
	}
	for i := 0; i < 100; i++ {
		take(g)
	}
}
