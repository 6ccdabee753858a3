package p2p

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/aspen-market/aspen/protocol"
)

// inbox records what a host's gossip handlers receive.
type inbox struct {
	mu     sync.Mutex
	offers map[peer.ID][]uint64 // signer -> seqs received
	bids   map[peer.ID][]uint64
}

func listen(h *Host) *inbox {
	in := &inbox{offers: map[peer.ID][]uint64{}, bids: map[peer.ID][]uint64{}}
	h.OnOffer(func(from peer.ID, o *protocol.Offer, raw []byte) {
		in.mu.Lock()
		in.offers[from] = append(in.offers[from], o.Seq)
		in.mu.Unlock()
	})
	h.OnBid(func(from peer.ID, b *protocol.Bid, raw []byte) {
		in.mu.Lock()
		in.bids[from] = append(in.bids[from], b.Seq)
		in.mu.Unlock()
	})
	return in
}

func (in *inbox) hasOffer(from peer.ID, seq uint64) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, s := range in.offers[from] {
		if s == seq {
			return true
		}
	}
	return false
}

func (in *inbox) hasBid(from peer.ID, seq uint64) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, s := range in.bids[from] {
		if s == seq {
			return true
		}
	}
	return false
}

func (in *inbox) count(from peer.ID) int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.offers[from]) + len(in.bids[from])
}

func testOffer(worker peer.ID) *protocol.Offer {
	return &protocol.Offer{Worker: worker, MinPrice: 40_000, Capacity: 2, Slots: 4, Addrs: []string{"/ip4/127.0.0.1/tcp/1"}}
}

func testBid(consumer peer.ID) *protocol.Bid {
	return &protocol.Bid{Consumer: consumer, Group: protocol.NewID(), Module: protocol.BlobCID([]byte("module")), Tasks: 10, MaxPrice: 100_000, MinSpeed: 1000, Replicas: 2}
}

// publishUntil publishes fresh messages from pub every 500 ms (within the
// gossip rate limit) until every inbox got one, and returns the last seq.
func publishUntil(t *testing.T, pub *Host, bid bool, inboxes []*inbox) uint64 {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var seq uint64
		if bid {
			b := testBid(pub.ID())
			if err := pub.PublishBid(context.Background(), b); err != nil {
				t.Fatal(err)
			}
			seq = b.Seq
		} else {
			o := testOffer(pub.ID())
			if err := pub.PublishOffer(context.Background(), o); err != nil {
				t.Fatal(err)
			}
			seq = o.Seq
		}
		wait := time.Now().Add(500 * time.Millisecond)
		for time.Now().Before(wait) {
			all := true
			for _, in := range inboxes {
				if (bid && !in.hasBid(pub.ID(), seq)) || (!bid && !in.hasOffer(pub.ID(), seq)) {
					all = false
				}
			}
			if all {
				return seq
			}
			time.Sleep(10 * time.Millisecond)
		}
		if time.Now().After(deadline) {
			t.Fatalf("message from %s never reached every peer", pub.ID())
		}
	}
}

func TestGossipPropagatesAlongLine(t *testing.T) {
	const n = 4
	var hosts []*Host
	var inboxes []*inbox
	for i := range n {
		h := newHost(t, nil)
		hosts = append(hosts, h)
		inboxes = append(inboxes, listen(h))
		if i > 0 {
			connect(t, hosts[i-1], h)
		}
	}
	// An offer from one end and a bid from the other reach every peer.
	publishUntil(t, hosts[0], false, inboxes[1:])
	publishUntil(t, hosts[n-1], true, inboxes[:n-1])
	// Once meshes are formed, a single message reaches everyone.
	o := testOffer(hosts[1].ID())
	if err := hosts[1].PublishOffer(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "offer everywhere", func() bool {
		for i, in := range inboxes {
			if i != 1 && !in.hasOffer(hosts[1].ID(), o.Seq) {
				return false
			}
		}
		return true
	})
	// Own messages are not delivered to oneself.
	if inboxes[1].count(hosts[1].ID()) != 0 {
		t.Fatal("own offer delivered")
	}
}

func TestPublishFillsAndChecks(t *testing.T) {
	h := newHost(t, nil)
	o := &protocol.Offer{Slots: 1}
	if err := h.PublishOffer(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if o.Worker != h.ID() || o.Seq == 0 || o.Expires == 0 {
		t.Fatalf("offer not filled: %+v", o)
	}
	o2 := &protocol.Offer{Slots: 1}
	if err := h.PublishOffer(context.Background(), o2); err != nil || o2.Seq <= o.Seq {
		t.Fatalf("seq %d after %d: %v", o2.Seq, o.Seq, err)
	}
	other := newKey(t)
	oid, _ := peer.IDFromPrivateKey(other)
	if err := h.PublishOffer(context.Background(), &protocol.Offer{Worker: oid}); !errors.Is(err, ErrSignerMismatch) {
		t.Fatalf("want signer mismatch, got %v", err)
	}
	// Our own validator refuses a replayed seq.
	if err := h.PublishOffer(context.Background(), &protocol.Offer{Seq: o.Seq - 100, Slots: 1}); !errors.Is(err, ErrRejected) {
		t.Fatalf("want rejected, got %v", err)
	}
	if err := h.PublishOffer(context.Background(), &protocol.Offer{Slots: 1, Expires: time.Now().Add(time.Hour).UnixMilli()}); !errors.Is(err, ErrRejected) {
		t.Fatalf("want rejected, got %v", err)
	}
}

// rogue is a peer speaking gossipsub without Aspen's validators, to send
// raw bytes. By default it publishes like an Aspen node (no pubsub author,
// seqno or signature; content-addressed IDs); opts replace that.
type rogue struct {
	h      host.Host
	key    crypto.PrivKey
	id     peer.ID
	ps     *pubsub.PubSub
	cancel context.CancelFunc
	topics map[string]*pubsub.Topic
}

func newRogue(t *testing.T, opts ...pubsub.Option) *rogue {
	t.Helper()
	if opts == nil {
		opts = []pubsub.Option{pubsub.WithMessageIdFn(msgID), pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign), pubsub.WithNoAuthor()}
	}
	key := newKey(t)
	h, err := libp2p.New(libp2p.Identity(key), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ps, err := pubsub.NewGossipSub(ctx, h, opts...)
	if err != nil {
		t.Fatal(err)
	}
	r := &rogue{h: h, key: key, id: h.ID(), ps: ps, cancel: cancel, topics: map[string]*pubsub.Topic{}}
	for _, name := range topicNames {
		tp, err := ps.Join(name)
		if err != nil {
			t.Fatal(err)
		}
		r.topics[name] = tp
	}
	t.Cleanup(func() { cancel(); h.Close() })
	return r
}

func (r *rogue) connect(t *testing.T, to *Host) {
	t.Helper()
	if err := r.h.Connect(context.Background(), to.AddrInfo()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "rogue to see the topic peer", func() bool {
		for _, p := range r.topics[protocol.TopicOffers].ListPeers() {
			if p == to.ID() {
				return true
			}
		}
		return false
	})
}

func (r *rogue) publish(t *testing.T, topic string, data []byte) {
	t.Helper()
	if err := r.topics[topic].Publish(context.Background(), data); err != nil {
		t.Fatal(err)
	}
}

func seal(t testing.TB, key crypto.PrivKey, m protocol.Message) []byte {
	t.Helper()
	b, err := protocol.Seal(key, m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func future() int64 { return time.Now().Add(5 * time.Minute).UnixMilli() }

// forgedEnvelope returns an offer claiming to be from claimed but signed by
// another key (the signer field is swapped after signing).
func forgedEnvelope(t testing.TB, claimed peer.ID) []byte {
	other := newKey(t)
	oid, _ := peer.IDFromPrivateKey(other)
	o := testOffer(claimed)
	o.Seq, o.Expires = 1, future()
	b := seal(t, other, o)
	a, c := []byte(oid), []byte(claimed)
	if len(a) != len(c) || string(b[6:6+len(a)]) != string(a) {
		t.Fatal("unexpected envelope layout")
	}
	copy(b[6:], c)
	return b
}

func TestGossipMisbehaviourIsDroppedAndPenalised(t *testing.T) {
	// a knows a signer's reorder window after 2 messages.
	a, b := newHost(t, func(c *Config) { c.SeqWindow = 2 }), newHost(t, nil)
	inB := listen(b)
	listen(a)
	connect(t, a, b)
	publishUntil(t, a, false, []*inbox{inB}) // the honest mesh works

	cases := []struct {
		name  string
		topic string
		data  func(r *rogue) []byte
	}{
		{"forged signature", protocol.TopicOffers, func(r *rogue) []byte { return forgedEnvelope(t, r.id) }},
		{"author is not signer", protocol.TopicOffers, func(r *rogue) []byte {
			o := testOffer(a.ID())
			o.Seq, o.Expires = 1, future()
			return seal(t, r.key, o)
		}},
		{"oversized", protocol.TopicOffers, func(r *rogue) []byte {
			o := testOffer(r.id)
			o.Seq, o.Expires = 1, future()
			return append(seal(t, r.key, o), make([]byte, protocol.MaxGossipSize)...)
		}},
		{"garbage", protocol.TopicBids, func(r *rogue) []byte { return []byte("hello") }},
		{"expired", protocol.TopicOffers, func(r *rogue) []byte {
			o := testOffer(r.id)
			o.Seq, o.Expires = 1, time.Now().Add(-10*time.Minute).UnixMilli()
			return seal(t, r.key, o)
		}},
		{"expiry too far ahead", protocol.TopicOffers, func(r *rogue) []byte {
			o := testOffer(r.id)
			o.Seq, o.Expires = 1, time.Now().Add(time.Hour).UnixMilli()
			return seal(t, r.key, o)
		}},
		{"bid on offers topic", protocol.TopicOffers, func(r *rogue) []byte {
			bid := testBid(r.id)
			bid.Seq, bid.Expires = 1, future()
			return seal(t, r.key, bid)
		}},
	}
	var rogues []peer.ID
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRogue(t)
			rogues = append(rogues, r.id)
			r.connect(t, a)
			before := a.GossipStats().Rejected
			r.publish(t, tc.topic, tc.data(r))
			waitFor(t, 10*time.Second, "rejection", func() bool { return a.GossipStats().Rejected > before })
			waitFor(t, 10*time.Second, "score to fall", func() bool { return a.PeerScore(r.id) <= GossipThreshold })
		})
	}

	// Messages carrying pubsub authentication (a signature, or an author
	// and seqno) are dropped by pubsub before the validator runs, and
	// their sender penalised the same way.
	legacy := []struct {
		name string
		opts []pubsub.Option
	}{
		{"pubsub-signed", []pubsub.Option{pubsub.WithMessageIdFn(msgID), pubsub.WithMessageSignaturePolicy(pubsub.StrictSign)}},
		{"pubsub author and seqno, unsigned", []pubsub.Option{pubsub.WithMessageIdFn(msgID), pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign)}},
	}
	for _, tc := range legacy {
		t.Run(tc.name, func(t *testing.T) {
			r := newRogue(t, tc.opts...)
			rogues = append(rogues, r.id)
			r.connect(t, a)
			o := testOffer(r.id)
			o.Seq, o.Expires = 1, future()
			r.publish(t, protocol.TopicOffers, seal(t, r.key, o)) // a valid envelope
			waitFor(t, 10*time.Second, "score to fall", func() bool { return a.PeerScore(r.id) <= GossipThreshold })
		})
	}

	// The envelope, not the pubsub message, names the author: an authentic
	// offer of another peer sent by a peer that is not its author is a
	// relay, delivered, and its sender is not penalised.
	t.Run("relayed for another author", func(t *testing.T) {
		r := newRogue(t)
		r.connect(t, a)
		k := newKey(t)
		id, _ := peer.IDFromPrivateKey(k)
		o := testOffer(id)
		o.Seq, o.Expires = 1, future()
		r.publish(t, protocol.TopicOffers, seal(t, k, o))
		waitFor(t, 10*time.Second, "relayed offer delivered", func() bool { return inB.hasOffer(id, 1) })
		if s := a.PeerScore(r.id); s < 0 {
			t.Fatalf("relaying peer's score %v", s)
		}
	})

	t.Run("replayed seq", func(t *testing.T) {
		r := newRogue(t)
		r.connect(t, a)
		o := testOffer(r.id)
		o.Expires = future()
		// One at a time: a validates concurrently, so two offers published
		// back to back can be judged out of order (the older one then
		// counts as reordered, not accepted, and no floor is known yet).
		for _, seq := range []uint64{100, 101} {
			o.Seq = seq
			r.publish(t, protocol.TopicOffers, seal(t, r.key, o))
			waitFor(t, 10*time.Second, "offer relayed", func() bool { return inB.hasOffer(r.id, seq) })
		}
		before := a.GossipStats().Rejected
		o.Seq, o.MinPrice = 50, 1 // older seq, different bytes
		r.publish(t, protocol.TopicOffers, seal(t, r.key, o))
		waitFor(t, 10*time.Second, "rejection", func() bool { return a.GossipStats().Rejected > before })
		waitFor(t, 10*time.Second, "score to fall", func() bool { return a.PeerScore(r.id) < 0 })
		if inB.hasOffer(r.id, 50) {
			t.Fatal("replayed offer relayed")
		}
	})

	// An author's older message arriving after a newer one (its direct
	// stream slower than a relay path) is dropped, not penalised.
	t.Run("reordered from author", func(t *testing.T) {
		r := newRogue(t)
		r.connect(t, a)
		o := testOffer(r.id)
		o.Expires = future()
		for _, seq := range []uint64{200_000, 400_000} {
			o.Seq = seq
			r.publish(t, protocol.TopicOffers, seal(t, r.key, o))
		}
		waitFor(t, 10*time.Second, "offers relayed", func() bool { return inB.hasOffer(r.id, 400_000) })
		before := a.GossipStats()
		o.Seq = 300_000
		r.publish(t, protocol.TopicOffers, seal(t, r.key, o))
		waitFor(t, 10*time.Second, "ignored", func() bool { return a.GossipStats().Ignored > before.Ignored })
		if got := a.GossipStats().Rejected; got != before.Rejected {
			t.Fatalf("rejected %d messages, want none", got-before.Rejected)
		}
		if s := a.PeerScore(r.id); s < 0 {
			t.Fatalf("author's score %v after a reordered offer", s)
		}
		if inB.hasOffer(r.id, 300_000) {
			t.Fatal("superseded offer relayed")
		}
	})

	t.Run("flood", func(t *testing.T) {
		r := newRogue(t)
		r.connect(t, a)
		exp := future()
		for i := 1; i <= 40; i++ {
			o := testOffer(r.id)
			o.Seq, o.Expires = uint64(i), exp
			r.publish(t, protocol.TopicOffers, seal(t, r.key, o))
		}
		waitFor(t, 10*time.Second, "score to fall", func() bool { return a.PeerScore(r.id) < GraylistThreshold })
		if got := inB.count(r.id); got > DefaultConfig().GossipBurst+2 {
			t.Fatalf("%d flooded offers relayed", got)
		}
	})

	// Nothing bad reached b; honest gossip still flows both ways.
	inA := listen(a)
	for _, id := range rogues {
		if inB.count(id) != 0 {
			t.Fatalf("an invalid message from %s reached b", id)
		}
	}
	publishUntil(t, a, true, []*inbox{inB})
	publishUntil(t, b, false, []*inbox{inA})
	stats := a.GossipStats()
	t.Logf("a: %+v; b: %+v", stats, b.GossipStats())
	if stats.Rejected < uint64(len(cases)) {
		t.Fatalf("rejected %d", stats.Rejected)
	}
}

// checkHost is a host for calling the validator directly.
func checkHost(t *testing.T, mutate func(*Config)) *Host {
	cfg := testConfig(t)
	if mutate != nil {
		mutate(&cfg)
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// gossipMsg is data on topic as received from the peer from. Aspen gossip
// messages carry no pubsub author (StrictNoSign, no author): the envelope's
// signer is the author, so author (whom the caller expects to have signed
// data) is not put on the message.
func gossipMsg(topic string, data []byte, author, from peer.ID) *pubsub.Message {
	return &pubsub.Message{Message: &pb.Message{Data: data, Topic: &topic}, ReceivedFrom: from}
}

func TestValidatorDecisions(t *testing.T) {
	hookErr := errors.New("rating is not from our verifier")
	var hookMode string
	h := checkHost(t, func(c *Config) {
		c.SeqWindow = 2
		c.GossipBurst = 20
		c.ValidateOffer = func(o *protocol.Offer) error {
			switch hookMode {
			case "reject":
				return hookErr
			case "ignore":
				return fmt.Errorf("%w: rating expired", ErrIgnore)
			}
			return nil
		}
	})
	key := newKey(t)
	w, _ := peer.IDFromPrivateKey(key)
	relay := peer.ID("relay")
	offer := func(seq uint64, exp int64) []byte {
		o := testOffer(w)
		o.Seq, o.Expires = seq, exp
		return seal(t, key, o)
	}
	exp := future()
	steps := []struct {
		name string
		data []byte
		from peer.ID
		mode string
		want pubsub.ValidationResult
	}{
		// Seqs as PublishOffer makes them: microseconds of the clock.
		// The reorder window (SeqWindow 2) counts messages, not Seq units.
		{"first", offer(1_000_000, exp), w, "", pubsub.ValidationAccept},
		{"same seq again", offer(1_000_000, exp+1), relay, "", pubsub.ValidationIgnore},
		{"older via relay, window not yet known", offer(900_000, exp), relay, "", pubsub.ValidationIgnore},
		{"older from author, window not yet known", offer(800_000, exp), w, "", pubsub.ValidationIgnore},
		{"next", offer(1_200_000, exp), relay, "", pubsub.ValidationAccept}, // 2 accepted: floor is the first
		{"reordered from author, in window", offer(1_100_000, exp), w, "", pubsub.ValidationIgnore},
		{"reordered via relay, in window", offer(1_000_001, exp), relay, "", pubsub.ValidationIgnore},
		{"old via relay", offer(900_000, exp), relay, "", pubsub.ValidationReject},
		{"old from author", offer(999_999, exp), w, "", pubsub.ValidationReject},
		{"just expired", offer(1_300_000, time.Now().Add(-time.Second).UnixMilli()), w, "", pubsub.ValidationIgnore},
		{"long expired", offer(1_400_000, time.Now().Add(-time.Hour).UnixMilli()), w, "", pubsub.ValidationReject},
		{"too far ahead", offer(1_500_000, time.Now().Add(protocol.MaxOfferTTL+protocol.MaxClockSkew+time.Minute).UnixMilli()), w, "", pubsub.ValidationReject},
		{"hook rejects", offer(1_600_000, exp), w, "reject", pubsub.ValidationReject},
		{"hook ignores", offer(1_700_000, exp), w, "ignore", pubsub.ValidationIgnore},
		{"hook passes", offer(1_800_000, exp), w, "", pubsub.ValidationAccept},
	}
	for _, s := range steps {
		hookMode = s.mode
		got := h.validate(kindOffer, s.from, gossipMsg(protocol.TopicOffers, s.data, w, s.from))
		if got != s.want {
			t.Errorf("%s: got %v want %v", s.name, got, s.want)
		}
	}
	// pubsub authentication fields are refused (pubsub drops them first;
	// the validator does not rely on it).
	for name, set := range map[string]func(*pb.Message){
		"from":      func(m *pb.Message) { m.From = []byte(w) },
		"seqno":     func(m *pb.Message) { m.Seqno = []byte{1} },
		"signature": func(m *pb.Message) { m.Signature = []byte{1} },
		"key":       func(m *pb.Message) { m.Key = []byte{1} },
	} {
		m := gossipMsg(protocol.TopicOffers, offer(200, exp), w, w)
		set(m.Message)
		if got := h.validate(kindOffer, w, m); got != pubsub.ValidationReject {
			t.Errorf("pubsub %s present: %v", name, got)
		}
	}
	// The envelope alone authenticates: a relayed copy of an authentic
	// offer is accepted, one whose signer is not its author is refused,
	// relayed or direct.
	if got := h.validate(kindOffer, relay, gossipMsg(protocol.TopicOffers, offer(2_000_000, exp), w, relay)); got != pubsub.ValidationAccept {
		t.Errorf("relayed authentic offer: %v", got)
	}
	k3 := newKey(t)
	other := testOffer(w)
	other.Seq, other.Expires = 2_100_000, exp
	for _, from := range []peer.ID{relay, w} {
		if got := h.validate(kindOffer, from, gossipMsg(protocol.TopicOffers, seal(t, k3, other), w, from)); got != pubsub.ValidationReject {
			t.Errorf("offer for %s signed by another key, from %s: %v", w, from, got)
		}
	}
	// Rate: the burst passes, then direct floods are rejected and relayed
	// ones ignored.
	k2 := newKey(t)
	w2, _ := peer.IDFromPrivateKey(k2)
	burst := h.cfg.GossipBurst
	for i := 1; i <= burst+2; i++ {
		o := testOffer(w2)
		o.Seq, o.Expires = uint64(i), exp
		from := w2
		if i == burst+2 {
			from = relay
		}
		got := h.validate(kindOffer, from, gossipMsg(protocol.TopicOffers, seal(t, k2, o), w2, from))
		want := pubsub.ValidationAccept
		switch {
		case i == burst+1:
			want = pubsub.ValidationReject
		case i == burst+2:
			want = pubsub.ValidationIgnore
		}
		if got != want {
			t.Errorf("message %d: got %v want %v", i, got, want)
		}
	}
}

func TestSeqGuardBounded(t *testing.T) {
	g := newSeqGuard(100, 1, 1, 0)
	now := time.Now()
	for i := range 1000 {
		p := peer.ID(fmt.Sprintf("p%d", i))
		if r, _ := g.admit(p, kindOffer, 1, now.Add(time.Minute).UnixMilli(), true, now, now); r != pubsub.ValidationAccept {
			t.Fatal(r)
		}
	}
	if len(g.m) > 100 {
		t.Fatalf("guard holds %d signers", len(g.m))
	}
}

// TestSeqGuardWindow: the reorder window counts messages whatever the
// spacing of Seqs, and a message dropped as old still costs a token.
func TestSeqGuardWindow(t *testing.T) {
	now := time.Now()
	exp := now.Add(time.Minute).UnixMilli()
	p := peer.ID("p")
	admit := func(g *seqGuard, seq uint64, direct bool) pubsub.ValidationResult {
		r, _ := g.admit(p, kindOffer, seq, exp, direct, now, now)
		return r
	}
	const step = 200_000 // clock-seeded Seqs, 200 ms apart
	g := newSeqGuard(10, 1, 1000, 4)
	for i := range uint64(10) {
		if r := admit(g, (10+i)*step, true); r != pubsub.ValidationAccept {
			t.Fatalf("seq %d: %v", i, r)
		}
	}
	// 10 accepted with window 4: generations 10-13, 14-17, 18-19 (open),
	// so the floor is 14: the window reaches 5 messages back here (4 to
	// 7, depending on where the open generation is).
	for _, c := range []struct {
		seq  uint64
		want pubsub.ValidationResult
	}{
		{19*step - 1, pubsub.ValidationIgnore}, // reordered, unseen
		{19 * step, pubsub.ValidationIgnore},   // the last again
		{15 * step, pubsub.ValidationIgnore},   // 4 back
		{14 * step, pubsub.ValidationIgnore},   // 5 back: the floor
		{14*step - 1, pubsub.ValidationReject}, // below the floor
		{1, pubsub.ValidationReject},
		{20 * step, pubsub.ValidationAccept},
	} {
		for _, direct := range []bool{true, false} {
			if c.want == pubsub.ValidationAccept && !direct {
				continue
			}
			if r := admit(g, c.seq, direct); r != c.want {
				t.Errorf("seq %d (direct %v): got %v want %v", c.seq, direct, r, c.want)
			}
		}
	}
	// Window 0: any lower Seq is a replay.
	g = newSeqGuard(10, 1, 1000, 0)
	admit(g, 5*step, false)
	if r := admit(g, 4*step, false); r != pubsub.ValidationReject {
		t.Errorf("window 0: got %v", r)
	}
	// Old Seqs are not free: with a burst of 3 and no refill, one accept
	// and two copies use the tokens up.
	g = newSeqGuard(10, 1e-9, 3, 16)
	for i, want := range []pubsub.ValidationResult{pubsub.ValidationAccept, pubsub.ValidationIgnore, pubsub.ValidationIgnore, pubsub.ValidationReject} {
		if r := admit(g, step, true); r != want {
			t.Errorf("copy %d: got %v want %v", i, r, want)
		}
	}
}

// ratedOffer is an offer from key's peer carrying a rating sealed by vkey.
func ratedOffer(t testing.TB, key, vkey crypto.PrivKey, seq uint64, ratingExpires time.Time) []byte {
	t.Helper()
	w, _ := peer.IDFromPrivateKey(key)
	o := testOffer(w)
	o.Seq, o.Expires = seq, future()
	o.Rating = seal(t, vkey, &protocol.Rating{Worker: w, Speed: 1000, Issued: time.Now().UnixMilli(), Expires: ratingExpires.UnixMilli()})
	return seal(t, key, o)
}

func TestValidatorRatingAdmission(t *testing.T) {
	vkey := newKey(t)
	vid, _ := peer.IDFromPrivateKey(vkey)
	h := checkHost(t, func(c *Config) { c.RatingSigner = vid })
	relay := peer.ID("relay")
	later := time.Now().Add(time.Hour)
	k := newKey(t)
	w, _ := peer.IDFromPrivateKey(k)
	unrated := testOffer(w)
	unrated.Seq, unrated.Expires = 1, future()
	forgedRating := ratedOffer(t, k, k, 2, later) // sealed by the worker itself
	otherKey := newKey(t)
	other, _ := peer.IDFromPrivateKey(otherKey)
	o := testOffer(w)
	o.Seq, o.Expires = 3, future()
	o.Rating = seal(t, vkey, &protocol.Rating{Worker: other, Speed: 1000, Expires: later.UnixMilli()})
	forOther := seal(t, k, o)
	for _, s := range []struct {
		name string
		data []byte
		want pubsub.ValidationResult
	}{
		{"no rating", seal(t, k, unrated), pubsub.ValidationReject},
		{"rating sealed by the worker", forgedRating, pubsub.ValidationReject},
		{"rating for another worker", forOther, pubsub.ValidationReject},
		{"expired rating", ratedOffer(t, k, vkey, 4, time.Now().Add(-time.Second)), pubsub.ValidationIgnore},
		{"valid rating", ratedOffer(t, k, vkey, 5, later), pubsub.ValidationAccept},
		{"same rating again (cached)", ratedOffer(t, k, vkey, 6, later), pubsub.ValidationAccept},
	} {
		if got := h.validate(kindOffer, relay, gossipMsg(protocol.TopicOffers, s.data, w, relay)); got != s.want {
			t.Errorf("%s: got %v want %v", s.name, got, s.want)
		}
	}
	// Refused offers took no place in the per-signer table.
	if n := h.GossipStats().Signers; n != 1 {
		t.Errorf("%d signers tracked, want 1 (the rated one)", n)
	}
}

// TestGossipFloodViaOneRelay: one peer relays 2,500 offers, each signed
// by a fresh key. Unrated, they are rejected before they take any table
// space and the relay is graylisted within a few messages; rated (2,500
// sybils the verifier rated), the relay's bucket admits its burst and
// rate, the rest is dropped before it is queued for validation and the
// relay is graylisted. Honest offers are delivered after both floods.
func TestGossipFloodViaOneRelay(t *testing.T) {
	vkey := newKey(t)
	vid, _ := peer.IDFromPrivateKey(vkey)
	rated := func(c *Config) { c.RatingSigner = vid }
	victim := newHost(t, rated)
	honest := newHost(t, rated)
	inV := listen(victim)
	connect(t, honest, victim)
	later := time.Now().Add(time.Hour)
	hk := honest.cfg.Key
	seq := uint64(time.Now().UnixMicro())
	// publishHonest publishes a fresh offer every 500 ms (the mesh may
	// still be forming) until the victim delivers one.
	publishHonest := func() {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			seq++
			if err := honest.topics[kindOffer].Publish(context.Background(), ratedOffer(t, hk, vkey, seq, later)); err != nil {
				t.Fatal(err)
			}
			s := seq
			for wait := time.Now().Add(500 * time.Millisecond); time.Now().Before(wait) && !inV.hasOffer(honest.ID(), s); {
				time.Sleep(10 * time.Millisecond) // polling for delivery, as waitFor does
			}
			if inV.hasOffer(honest.ID(), s) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("the victim delivered no honest offer")
			}
		}
	}
	publishHonest()

	const n = 2500
	keys := make([]crypto.PrivKey, n)
	for i := range keys {
		keys[i] = newKey(t)
	}
	flood := func(r *rogue, mk func(i int) []byte) {
		for i := range n {
			r.publish(t, protocol.TopicOffers, mk(i))
		}
	}
	big := []pubsub.Option{pubsub.WithMessageIdFn(msgID), pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign),
		pubsub.WithNoAuthor(), pubsub.WithPeerOutboundQueueSize(4 * n)}

	// Unrated sybils.
	r1 := newRogue(t, big...)
	r1.connect(t, victim)
	flood(r1, func(i int) []byte {
		w, _ := peer.IDFromPrivateKey(keys[i])
		o := testOffer(w)
		o.Seq, o.Expires = 1, future()
		return seal(t, keys[i], o)
	})
	waitFor(t, 20*time.Second, "the unrated relay graylisted", func() bool { return victim.PeerScore(r1.id) < GraylistThreshold })
	st := victim.GossipStats()
	t.Logf("unrated flood: rejected %d, ignored %d, signers tracked %d, relays %d, relay score %.1f",
		st.Rejected, st.Ignored, st.Signers, st.Relays, victim.PeerScore(r1.id))
	if st.Signers > 2 {
		t.Errorf("%d signers tracked after an unrated flood", st.Signers)
	}
	if got := inV.count(r1.id); got != 0 {
		t.Errorf("%d sybil offers delivered", got)
	}
	publishHonest()

	// Rated sybils through a second relay.
	r2 := newRogue(t, big...)
	r2.connect(t, victim)
	began := time.Now()
	sealed := make([][]byte, n)
	for i := range sealed {
		sealed[i] = ratedOffer(t, keys[i], vkey, seq+uint64(i), later)
	}
	flood(r2, func(i int) []byte { return sealed[i] })
	waitFor(t, 20*time.Second, "the rated flood's relay graylisted", func() bool { return victim.PeerScore(r2.id) < GraylistThreshold })
	elapsed := time.Since(began).Seconds()
	st = victim.GossipStats()
	bound := victim.cfg.RelayBurst + int(victim.cfg.RelayRate*elapsed) + 3
	t.Logf("rated flood over %.1f s: dropped over the relay rate %d, signers tracked %d (bound %d), relays %d, relay score %.1f",
		elapsed, st.RelayDropped, st.Signers, bound, st.Relays, victim.PeerScore(r2.id))
	if st.Signers > bound {
		t.Errorf("%d signers tracked, more than the relay's burst and rate allow (%d)", st.Signers, bound)
	}
	publishHonest()
}
