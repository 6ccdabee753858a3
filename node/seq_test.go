package node_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/aspen-market/aspen/node"
	"github.com/aspen-market/aspen/protocol"
)

// TestRestartedWorkerOffersAccepted restarts a worker on its data
// directory: a peer that saw its earlier offers delivers the new ones from
// the first (their Seq is above the old ones: none is dropped as a replay
// or as older than what it saw) and never penalises it.
func TestRestartedWorkerOffersAccepted(t *testing.T) {
	nw := startNetwork(t)
	nw.waitRated(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	w := nw.workers[0]
	wid := w.ID()
	obs := clientHost(t, nil)
	var mu sync.Mutex
	var seqs []uint64
	obs.OnOffer(func(from peer.ID, o *protocol.Offer, _ []byte) {
		if from == wid {
			mu.Lock()
			seqs = append(seqs, o.Seq)
			mu.Unlock()
		}
	})
	if err := obs.Connect(ctx, nodeInfo(t, w)); err != nil {
		t.Fatal(err)
	}
	count := func() (int, uint64) {
		mu.Lock()
		defer mu.Unlock()
		var top uint64
		for _, s := range seqs {
			top = max(top, s)
		}
		return len(seqs), top
	}
	waitFor(t, "three offers from the worker", time.Minute, func() bool { n, _ := count(); return n >= 3 })

	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	before, top := count()
	// The observer hears only this worker (and what it relays, in order):
	// an offer it drops as older than one delivered before would count
	// as ignored.
	ignored := obs.GossipStats().Ignored
	w2 := startNode(t, nw.nodeConfig("worker-0", node.RoleWorker))
	if w2.ID() != wid {
		t.Fatalf("restarted worker is %s, was %s", w2.ID(), wid)
	}
	if err := obs.Connect(ctx, nodeInfo(t, w2)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "an offer from the restarted worker", time.Minute, func() bool { n, _ := count(); return n > before })
	mu.Lock()
	after := seqs[before:]
	mu.Unlock()
	for _, s := range after {
		if s <= top {
			t.Fatalf("offer Seq %d after the restart, %d before", s, top)
		}
	}
	if st := obs.GossipStats(); st.Rejected != 0 || st.Ignored != ignored {
		t.Errorf("observer rejected %d gossip messages, ignored %d after the restart", st.Rejected, st.Ignored-ignored)
	}
	if s := obs.PeerScore(wid); s < 0 {
		t.Errorf("restarted worker's score %v", s)
	}
}
