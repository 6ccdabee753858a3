package node

import (
	"crypto/rand"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/aspen-market/aspen/protocol"
)

// TestOfferTableBounded: the offer table keeps at most maxOffers workers;
// a full table drops expired offers first, then the one expiring first,
// and an offer whose rating is not the verifier's is not kept.
func TestOfferTableBounded(t *testing.T) {
	vkey, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	vid, _ := peer.IDFromPrivateKey(vkey)
	now := time.Now()
	n := &Node{cfg: Config{Verifier: peer.AddrInfo{ID: vid}, Now: func() time.Time { return now }}, offers: map[peer.ID]offerSeen{}}
	offer := func(key crypto.PrivKey, signer crypto.PrivKey, expires time.Time) *protocol.Offer {
		w, _ := peer.IDFromPrivateKey(key)
		r, err := protocol.Seal(signer, &protocol.Rating{Worker: w, Speed: 1000, Expires: now.Add(time.Hour).UnixMilli()})
		if err != nil {
			t.Fatal(err)
		}
		return &protocol.Offer{Worker: w, Seq: 1, Rating: r, Capacity: 1, Slots: 1, Expires: expires.UnixMilli()}
	}
	newKey := func() crypto.PrivKey {
		k, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	// One offer that expired, one that expires soonest, the rest later.
	expired := offer(newKey(), vkey, now.Add(-time.Second))
	soonest := offer(newKey(), vkey, now.Add(time.Second))
	n.onOffer(expired.Worker, expired, nil)
	n.onOffer(soonest.Worker, soonest, nil)
	for len(n.offers) < maxOffers {
		o := offer(newKey(), vkey, now.Add(time.Minute))
		n.onOffer(o.Worker, o, nil)
	}
	o := offer(newKey(), vkey, now.Add(time.Minute))
	n.onOffer(o.Worker, o, nil)
	if _, ok := n.offers[expired.Worker]; ok || len(n.offers) != maxOffers {
		t.Fatalf("%d offers, expired one kept: %v", len(n.offers), ok)
	}
	o = offer(newKey(), vkey, now.Add(time.Minute))
	n.onOffer(o.Worker, o, nil)
	if _, ok := n.offers[soonest.Worker]; ok || len(n.offers) != maxOffers {
		t.Fatalf("%d offers, the soonest-expiring kept: %v", len(n.offers), ok)
	}
	if _, ok := n.offers[o.Worker]; !ok {
		t.Fatal("the newest offer was not kept")
	}
	// A rating sealed by someone else: not kept.
	k := newKey()
	bad := offer(k, k, now.Add(time.Minute))
	n.onOffer(bad.Worker, bad, nil)
	if _, ok := n.offers[bad.Worker]; ok {
		t.Fatal("offer with a self-sealed rating kept")
	}
}
