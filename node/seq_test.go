package node_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/aspen-market/aspen/node"
	"github.com/aspen-market/aspen/protocol"
)

// TestRestartedWorkerOffersAccepted restarts a worker on its data
// directory: a peer that saw its earlier offers delivers new ones, every
// one with a Seq above all it saw before, and never penalises the worker
// (before, the worker counted from 1 again and those were dropped as stale
// or replays). That the very first new Seq is above every old one, also
// with the clock set back, is TestGossipSeqSurvivesRestartAndClockSetBack;
// the observer may still drop a new offer that reaches it late by gossip
// (IWANT) after a newer one, as for any publisher. The test plays the
// verifier (it rates the worker at registration).
func TestRestartedWorkerOffersAccepted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vkey, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	ver := clientHost(t, vkey)
	ver.Handle(protocol.ProtoRegister, func(_ context.Context, from peer.ID, _ *protocol.Envelope) (protocol.Message, error) {
		now := time.Now()
		r, err := protocol.Seal(vkey, &protocol.Rating{Worker: from, Speed: 1000, ReliabilityPPM: 1_000_000,
			Issued: now.UnixMilli(), Expires: now.Add(24 * time.Hour).UnixMilli()})
		return &protocol.Ack{OK: true, Data: r}, err
	})
	ver.Handle(protocol.ProtoHeartbeat, func(context.Context, peer.ID, *protocol.Envelope) (protocol.Message, error) {
		return &protocol.Ack{OK: true}, nil
	})
	cfg := node.DefaultConfig()
	cfg.DataDir = filepath.Join(t.TempDir(), "worker")
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.APIAddr = ""
	cfg.Verifier = ver.AddrInfo()
	cfg.Role = node.RoleWorker
	cfg.OfferInterval = 500 * time.Millisecond
	cfg.HeartbeatInterval = 200 * time.Millisecond
	cfg.Logger = quietLogger()
	w := startNode(t, cfg)
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
	// The replay floor (docs/p2p.md, check 8) is the Seq of SeqWindow (16)
	// to 32 offers ago: past 32 offers, a counter restarting from 1 (the
	// old worker) is rejected as a replay, penalising the worker.
	waitFor(t, "33 offers from the worker", time.Minute, func() bool { n, _ := count(); return n >= 33 })

	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	before, top := count()
	w2 := startNode(t, cfg)
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
	if st := obs.GossipStats(); st.Rejected != 0 {
		t.Errorf("observer rejected %d gossip messages", st.Rejected)
	}
	if s := obs.PeerScore(wid); s < 0 {
		t.Errorf("restarted worker's score %v", s)
	}
}
