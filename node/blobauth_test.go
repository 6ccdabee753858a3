package node_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/aspen-market/aspen/node"
	"github.com/aspen-market/aspen/node/p2p"
	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/store"
	"github.com/aspen-market/aspen/verifier"
)

// clientHost starts a bare p2p host with key (fresh when nil) that serves
// nothing: a stranger, or a node's identity borrowed after it closed.
func clientHost(t *testing.T, key crypto.PrivKey) *p2p.Host {
	t.Helper()
	if key == nil {
		k, _, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			t.Fatal(err)
		}
		key = k
	}
	cfg := p2p.DefaultConfig()
	cfg.Key = key
	cfg.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"}
	h, err := p2p.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return h
}

func storeConfig(t *testing.T) store.Config {
	c := store.DefaultConfig()
	c.Dir = t.TempDir()
	return c
}

func nodeInfo(t *testing.T, n *node.Node) peer.AddrInfo {
	t.Helper()
	pi, err := peer.AddrInfoFromP2pAddr(n.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	return *pi
}

// TestBlobsArePrivate runs a group with results too big to travel inline,
// every task also run by the verifier, then asks every holder for every
// blob as a stranger (refused, as if absent, also with a ticket it signed
// itself) and as the consumer (served its results by the workers and by
// the verifier).
func TestBlobsArePrivate(t *testing.T) {
	nw := startNetwork(t, func(c *verifier.Config) { c.Market.SpotCheckPPM = 1_000_000 })
	nw.waitRated(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := nw.v.Credit(ctx, nw.consumer.ID(), 10_000_000); err != nil {
		t.Fatal(err)
	}
	inputs := [][]byte{bytes.Repeat([]byte("m"), 10<<10), bytes.Repeat([]byte("L"), 100<<10)}
	id, err := nw.consumer.SubmitGroup(ctx, node.GroupSpec{Module: catModule, Inputs: inputs,
		MaxPrice: 5_000_000, Replicas: 2, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "group verified", 2*time.Minute, func() bool {
		g, err := nw.consumer.Group(id)
		return err == nil && g.Done
	})
	var results []cid.Cid
	for i := range inputs {
		_, rec, err := nw.consumer.Result(id, uint32(i))
		if err != nil || rec.State != node.TaskVerified {
			t.Fatalf("result %d: %+v %v", i, rec, err)
		}
		c, err := cid.Decode(rec.Result)
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, c)
	}
	module := protocol.BlobCID(catModule)

	stranger := clientHost(t, nil)
	holders := []peer.AddrInfo{nodeInfo(t, nw.consumer), nodeInfo(t, nw.workers[0]), nodeInfo(t, nw.workers[1]), nw.v.AddrInfo()}
	for _, pi := range holders {
		if err := stranger.Connect(ctx, pi); err != nil {
			t.Fatal(err)
		}
	}
	refused := func(what string, c cid.Cid, from peer.ID, why p2p.BlobReason) {
		t.Helper()
		st, err := store.Open(storeConfig(t))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		_, err = stranger.FetchBlobFor(ctx, c, []peer.ID{from}, st, protocol.MaxBlobSize, why)
		if !errors.Is(err, p2p.ErrBlobNotFound) {
			t.Errorf("stranger fetching %s: want not found, got %v", what, err)
		}
	}
	refused("the module from the consumer", module, nw.consumer.ID(), p2p.BlobReason{})
	refused("an input from the consumer", protocol.BlobCID(inputs[1]), nw.consumer.ID(), p2p.BlobReason{})
	for i, c := range results {
		for _, w := range nw.workers {
			refused("a result from a worker", c, w.ID(), p2p.BlobReason{})
		}
		refused("the verifier's own result", c, nw.v.ID(), p2p.BlobReason{Group: id, Task: uint32(i)})
	}
	// A ticket naming the stranger as worker, sealed by the stranger
	// instead of the verifier.
	strangerKey := stranger.Libp2p().Peerstore().PrivKey(stranger.ID())
	forged, err := protocol.Seal(strangerKey, &protocol.Assignment{ID: protocol.NewID(), Worker: stranger.ID(), Consumer: nw.consumer.ID(),
		Group: id, Module: module, TimeoutMillis: 1000, Expires: time.Now().Add(time.Hour).UnixMilli()})
	if err != nil {
		t.Fatal(err)
	}
	refused("the module with a forged ticket", module, nw.consumer.ID(), p2p.BlobReason{Ticket: forged})

	// The consumer's identity is served its results by every holder.
	cfg := nw.nodeConfig("consumer", node.RoleConsumer)
	if err := nw.consumer.Close(); err != nil {
		t.Fatal(err)
	}
	key, err := p2p.LoadOrCreateKey(filepath.Join(cfg.DataDir, node.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	owner := clientHost(t, key)
	for _, pi := range holders[1:] {
		if err := owner.Connect(ctx, pi); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range results {
		for _, from := range []peer.ID{nw.workers[0].ID(), nw.workers[1].ID(), nw.v.ID()} {
			st, err := store.Open(storeConfig(t))
			if err != nil {
				t.Fatal(err)
			}
			_, err = owner.FetchBlobFor(ctx, c, []peer.ID{from}, st, protocol.MaxBlobSize, p2p.BlobReason{Group: id, Task: uint32(i)})
			st.Close()
			if err != nil {
				t.Errorf("consumer fetching result %d from %s: %v", i, from, err)
			}
		}
	}
}
