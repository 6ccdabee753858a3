package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/aspen-market/aspen/client"
	"github.com/aspen-market/aspen/node/p2p"
	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/store"
)

// Attacks on the wire: blobs with wrong bytes, replays, forged signatures,
// floods and malformed frames.

func newKey(t testing.TB) crypto.PrivKey {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func tempStore(t testing.TB) *store.Store {
	t.Helper()
	cfg := store.DefaultConfig()
	cfg.Dir = t.TempDir()
	cfg.ValueLogGCInterval = 0
	st, err := store.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// attacker is a bare libp2p host of the test, connected to the given
// processes.
func attacker(t testing.TB, n *network, to ...peer.AddrInfo) *p2p.Host {
	t.Helper()
	h := testHost(t, newKey(t), p2p.StoreBlobs(tempStore(t)), peer.AddrInfo{})
	t.Cleanup(func() { h.Close() })
	n.label(h.ID(), "attacker")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, ai := range to {
		if err := h.Connect(ctx, ai); err != nil {
			t.Fatalf("attacker: connect to %s: %v", n.name(ai.ID.String()), err)
		}
	}
	return h
}

func echoJob(tasks, size int, price string) job {
	j := job{module: echo(), maxPrice: price, timeout: "1m"}
	for i := range tasks {
		in := bytes.Repeat(fmt.Appendf(nil, "task %d of the echo job; ", i), size/20)
		j.inputs = append(j.inputs, in[:size])
	}
	return j
}

// scCorruptBlobs: a worker computes correctly but serves its result blobs
// with wrong bytes. Results over 4 KiB are fetched by the consumer from
// the replicas that agreed.
func scCorruptBlobs(t *testing.T, n *network, r *row) {
	e := n.evil(t, "corrupter", "owner-corrupter", priceCheap, behaviour{corruptBlobs: true})
	defer e.close()
	n.waitRated(t, e)
	before := n.c.logCount("blob bytes did not match CID")
	j := echoJob(6, 8<<10, priceCheap)
	gid := n.submit(t, j)
	n.waitDone(t, gid, 2*time.Minute)
	v := n.judge(t, gid, j)
	n.fill(r, v)
	if v.verified != v.tasks || v.wrongAccepted != 0 {
		t.Errorf("verified %d/%d, %d wrong", v.verified, v.tasks, v.wrongAccepted)
	}
	met := n.c.logCount("blob bytes did not match CID") - before
	// And directly: fetching a result from the corrupter alone fails on
	// the CID check and stores nothing.
	var res string
	for _, ti := range v.vg.Tasks {
		res = ti.Result
	}
	c, err := protocol.ParseCID(res)
	if err != nil {
		t.Fatal(err)
	}
	a := attacker(t, n, e.host.AddrInfo())
	sink := tempStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = a.FetchBlob(ctx, c, []peer.ID{e.id}, sink, 1<<20)
	if !errors.Is(err, protocol.ErrCIDMismatch) {
		t.Errorf("fetching from the corrupter: %v, want a CID mismatch", err)
	}
	if _, ok, _ := sink.HasBlob(c); ok {
		t.Errorf("wrong bytes were stored")
	}
	r.Outcome = fmt.Sprintf("8 KiB results: consumer met wrong bytes %d times, refused them on the CID check and fetched from h1; direct fetch from the corrupter fails with a CID mismatch", met)
}

// scReplay: a worker replays its receipts (as sent and altered), claims
// another worker's assignment, relays a verifier-signed assignment to
// another worker and tries to spend or cancel for the consumer.
func scReplay(t *testing.T, n *network, r *row) {
	e := n.evil(t, "replayer", "owner-replayer", priceCheap, behaviour{})
	defer e.close()
	v := cheatRun(t, n, 3, e)
	n.fill(r, v)
	gid := v.vg.ID
	before, err := n.v.journal("")
	if err != nil {
		t.Fatal(err)
	}
	wBefore, _ := n.v.worker(e.id)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var notes []string
	send := func(what, proto string, to peer.ID, m protocol.Message) {
		var ack protocol.Ack
		err := e.host.Request(ctx, to, proto, m, &ack)
		var re *p2p.RemoteError
		switch {
		case err == nil:
			notes = append(notes, what+": acked, ignored")
		case errors.As(err, &re):
			notes = append(notes, fmt.Sprintf("%s: refused (%s)", what, ackName(re.Code)))
		default:
			t.Errorf("%s: %v", what, err)
		}
	}
	e.mu.Lock()
	receipts := append([]*protocol.Receipt(nil), e.receipts...)
	var sealed []byte
	for _, s := range e.sealed {
		var a protocol.Assignment
		if _, err := protocol.OpenAs(s, &a); err == nil && a.Consumer != n.v.desk() {
			sealed = s
		}
	}
	e.mu.Unlock()
	for _, rc := range receipts {
		send("receipt replayed", protocol.ProtoReceipt, n.v.id, rc)
		alt := *rc
		alt.Results = append([]protocol.TaskResult(nil), rc.Results...)
		out := protocol.Output{Status: protocol.StatusOK, Stdout: []byte("replayed with another answer\n")}
		enc := protocol.EncodeOutput(&out)
		alt.Results[0].Result, alt.Results[0].ResultSize, alt.Results[0].Inline = protocol.BlobCID(enc), uint64(len(enc)), enc
		send("receipt altered and replayed", protocol.ProtoReceipt, n.v.id, &alt)
	}
	for _, ti := range v.vg.Tasks {
		for _, rp := range ti.Replicas {
			if rp.Worker != n.h1.id.String() {
				continue
			}
			aid, err := protocol.ParseID(rp.Assignment)
			if err != nil {
				t.Fatal(err)
			}
			g, _ := protocol.ParseID(gid)
			out := protocol.Output{Status: protocol.StatusOK, Stdout: []byte("stolen\n")}
			enc := protocol.EncodeOutput(&out)
			send("receipt for h1's assignment", protocol.ProtoReceipt, n.v.id, &protocol.Receipt{Worker: e.id, Assignment: aid, Group: g,
				Results: []protocol.TaskResult{{Index: ti.Index, Replica: 0, Status: protocol.StatusOK, Result: protocol.BlobCID(enc),
					ResultSize: uint64(len(enc)), ExecMicros: 1000, Inline: enc}}})
			break
		}
	}
	// Relay a verifier-signed assignment (addressed to the replayer) to h1.
	if err := e.host.Connect(ctx, n.h1.addrInfo()); err != nil {
		t.Fatal(err)
	}
	if sealed == nil {
		t.Fatal("no real assignment captured")
	}
	ack, err := rawExchange(e.host, n.h1.id, protocol.ProtoAssign, frame(sealed), false)
	if err != nil || ack.OK {
		t.Errorf("relayed assignment: ack %+v, err %v", ack, err)
	} else {
		notes = append(notes, fmt.Sprintf("verifier's assignment relayed to h1: refused (%s)", ackName(ack.Code)))
	}
	g, _ := protocol.ParseID(gid)
	send("submit charged to the consumer", protocol.ProtoSubmit, n.v.id, &protocol.Submit{Consumer: n.c.id, Group: protocol.NewID(),
		Module: protocol.BlobCID(mustModule("primes")), ModuleSize: 1, MaxPrice: 1, Replicas: 2, TimeoutMillis: 1000, Time: time.Now().UnixMilli(),
		Tasks: []protocol.TaskInput{{Index: 0, Input: protocol.BlobCID([]byte("x")), Size: 1, Inline: []byte("x")}}})
	send("cancel of the consumer's group", protocol.ProtoCancel, n.v.id, &protocol.Cancel{Consumer: n.c.id, Group: g, Time: time.Now().UnixMilli()})
	send("statement of the consumer", protocol.ProtoStatement, n.v.id, &protocol.StatementRequest{Peer: n.c.id, Nonce: protocol.NewID(), Time: time.Now().UnixMilli()})

	after, err := n.v.journal("")
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Errorf("the journal grew from %d to %d entries during the replays", len(before), len(after))
	}
	wAfter, _ := n.v.worker(e.id)
	if wAfter.Strikes != wBefore.Strikes || wAfter.Completed != wBefore.Completed {
		t.Errorf("replays changed the replayer's record: %+v → %+v", wBefore, wAfter)
	}
	v2 := n.judge(t, gid, primesJobOf(v))
	for i := range v.results {
		if v.results[i].Result != v2.results[i].Result {
			t.Errorf("task %d result changed from %s to %s", i, v.results[i].Result, v2.results[i].Result)
		}
	}
	r.Outcome = summarize(notes) + "; journal, results and strikes unchanged"
}

// primesJobOf rebuilds the cheat group's job (cheatRun's inputs).
func primesJobOf(v verdict) job { return primesJob(v.tasks, primesWidth, priceCheap) }

// summarize counts identical notes: "x: refused (unauthorized) ×3".
func summarize(notes []string) string {
	var order []string
	count := map[string]int{}
	for _, s := range notes {
		if count[s] == 0 {
			order = append(order, s)
		}
		count[s]++
	}
	var out []string
	for _, s := range order {
		if count[s] > 1 {
			s = fmt.Sprintf("%s ×%d", s, count[s])
		}
		out = append(out, s)
	}
	return strings.Join(out, "; ")
}

func ackName(c protocol.AckCode) string {
	names := map[protocol.AckCode]string{
		protocol.AckBadRequest: "bad request", protocol.AckUnauthorized: "unauthorized", protocol.AckInsufficientFunds: "insufficient funds",
		protocol.AckNoWorkers: "no workers", protocol.AckBusy: "busy", protocol.AckPriceTooLow: "price too low",
		protocol.AckExpired: "expired", protocol.AckReplay: "replay", protocol.AckUnknown: "unknown", protocol.AckInternal: "internal",
		protocol.AckInvalidModule: "invalid module",
	}
	if s, ok := names[c]; ok {
		return s
	}
	return fmt.Sprintf("code %d", c)
}

// scForge: a peer forges the verifier's assignments to an honest worker,
// the verifier's releases to the consumer, and a verifier rating in its
// offer.
func scForge(t *testing.T, n *network, r *row) {
	key := newKey(t)
	f := testHost(t, key, p2p.StoreBlobs(tempStore(t)), peer.AddrInfo{})
	defer f.Close()
	n.label(f.ID(), "forger")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, ai := range []peer.AddrInfo{n.h1.addrInfo(), n.c.addrInfo()} {
		if err := f.Connect(ctx, ai); err != nil {
			t.Fatal(err)
		}
	}
	jobsBefore, err := n.h1.client().Jobs(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	var notes []string
	refused := func(what string, ack *protocol.Ack, err error) {
		var re *p2p.RemoteError
		switch {
		case errors.As(err, &re):
			notes = append(notes, fmt.Sprintf("%s: refused (%s)", what, ackName(re.Code)))
		case err == nil && ack != nil && !ack.OK:
			notes = append(notes, fmt.Sprintf("%s: refused (%s)", what, ackName(ack.Code)))
		default:
			t.Errorf("%s: not refused: ack %+v, err %v", what, ack, err)
		}
	}
	mod := mustModule("primes")
	in := []byte("2 100")
	now := time.Now().UnixMilli()
	asg := &protocol.Assignment{ID: protocol.NewID(), Worker: n.h1.id, Consumer: f.ID(), Group: protocol.NewID(),
		Module: protocol.BlobCID(mod), ModuleSize: uint64(len(mod)), Price: 1_000_000_000, TimeoutMillis: 60_000, MaxMemory: 64 << 20,
		Issued: now, Expires: now + 60_000,
		Tasks: []protocol.AssignedTask{{Index: 0, Input: protocol.BlobCID(in), Size: uint64(len(in)), Inline: in}}}
	var ack protocol.Ack
	err = f.Request(ctx, n.h1.id, protocol.ProtoAssign, asg, &ack)
	refused("assignment signed by the forger", &ack, err)
	a2, err := rawExchange(f, n.h1.id, protocol.ProtoAssign, frame(forgedEnvelope(key, n.v.id, asg)), false)
	refused("assignment with the verifier's name and a forged signature", a2, err)

	// A real group is running; forge its release.
	j := hashchainJob(2, 300_000, priceAll)
	gid := n.submit(t, j)
	g, _ := protocol.ParseID(gid)
	lie := protocol.Output{Status: protocol.StatusOK, Stdout: []byte("forged result\n")}
	enc := protocol.EncodeOutput(&lie)
	rel := &protocol.Release{Group: g, Seq: 1, Tasks: []protocol.Released{{Index: 0, Outcome: protocol.OutcomeVerified, Status: protocol.StatusOK,
		Result: protocol.BlobCID(enc), ResultSize: uint64(len(enc)), Holders: []peer.ID{f.ID()}, Inline: enc, Replicas: 2}}}
	err = f.Request(ctx, n.c.id, protocol.ProtoRelease, rel, &ack)
	refused("release signed by the forger", &ack, err)
	a3, err := rawExchange(f, n.c.id, protocol.ProtoRelease, frame(forgedEnvelope(key, n.v.id, rel)), false)
	refused("release with the verifier's name and a forged signature", a3, err)

	// An offer carrying a rating the forger signed itself.
	rating, err := protocol.Seal(key, &protocol.Rating{Worker: f.ID(), Speed: 1_000_000, ReliabilityPPM: 1_000_000,
		Issued: now, Expires: now + 3_600_000})
	if err != nil {
		t.Fatal(err)
	}
	// Gossip admits only offers with a rating from the pinned verifier: the
	// consumer rejects this one (the forger's score falls) and never
	// shows it.
	rejected := gossipCounts(t, n.c)["rejected"]
	waitFor(t, 30*time.Second, "the consumer to reject the forger's offer", func() (bool, error) {
		_ = f.PublishOffer(ctx, &protocol.Offer{MinPrice: 1, Capacity: 1, Slots: 1, Rating: rating,
			Expires: time.Now().Add(time.Minute).UnixMilli()})
		return gossipCounts(t, n.c)["rejected"] > rejected, nil
	})
	offers, err := n.c.client().Offers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range offers {
		if o.Worker == f.ID().String() {
			t.Errorf("the consumer shows the forger's offer %+v", o)
		}
	}
	notes = append(notes, "offer with a self-signed rating: rejected by gossip admission")
	if _, ok := n.v.worker(f.ID()); ok {
		t.Errorf("the verifier lists the forger as a worker")
	}

	n.waitDone(t, gid, 2*time.Minute)
	v := n.judge(t, gid, j)
	n.fill(r, v)
	if v.wrongAccepted != 0 || v.verified != v.tasks {
		t.Errorf("verified %d/%d, %d wrong", v.verified, v.tasks, v.wrongAccepted)
	}
	jobsAfter, err := n.h1.client().Jobs(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, jb := range jobsAfter {
		if jb.Group == asg.Group.String() {
			t.Errorf("h1 ran the forged assignment")
		}
	}
	_ = jobsBefore
	r.Outcome = summarize(notes) + "; the group completed with the true results"
}

// ---- gossip ----

// rawGossip is a gossipsub peer with no validation of its own: it publishes
// whatever bytes it is given.
type rawGossip struct {
	h      host.Host
	ps     *pubsub.PubSub
	topics map[string]*pubsub.Topic
	key    crypto.PrivKey
	id     peer.ID
}

func newRawGossip(t testing.TB, to []peer.AddrInfo, opts ...pubsub.Option) *rawGossip {
	t.Helper()
	key := newKey(t)
	h, err := libp2p.New(libp2p.Identity(key), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		h.Close()
	})
	ps, err := pubsub.NewGossipSub(ctx, h, append([]pubsub.Option{pubsub.WithPeerOutboundQueueSize(1 << 16)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	g := &rawGossip{h: h, ps: ps, topics: map[string]*pubsub.Topic{}, key: key, id: h.ID()}
	for _, name := range []string{protocol.TopicOffers, protocol.TopicBids} {
		tp, err := ps.Join(name)
		if err != nil {
			t.Fatal(err)
		}
		g.topics[name] = tp
	}
	cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
	defer ccancel()
	for _, ai := range to {
		if err := h.Connect(cctx, ai); err != nil {
			t.Fatalf("gossip peer: connect: %v", err)
		}
	}
	return g
}

// ready waits until the peer has a mesh on both topics.
func (g *rawGossip) ready(t testing.TB) {
	t.Helper()
	waitFor(t, 30*time.Second, "the flooder's gossip mesh", func() (bool, error) {
		for _, tp := range g.topics {
			if len(tp.ListPeers()) == 0 {
				return false, nil
			}
		}
		return true, nil
	})
}

// publish sends b to every peer subscribed to topic (flood publishing), in
// the mesh or not: a flooder does not care that it was pruned.
func (g *rawGossip) publish(ctx context.Context, topic string, b []byte) error {
	return g.topics[topic].Publish(ctx, b)
}

// gossipCounts reads a node's gossip validation counters from /metrics.
func gossipCounts(t testing.TB, nd *nodeProc) map[string]float64 {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+nd.apiAddr+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+nd.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := map[string]float64{}
	re := regexp.MustCompile(`aspen_node_gossip_messages_total\{result="(\w+)"\} ([0-9.e+]+)`)
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		out[m[1]] = v
	}
	return out
}

// scFlood: a peer floods the offer and bid topics with thousands of
// messages: well-signed offers far above the rate limit, replays, garbage
// and oversized ones. Everyone keeps serving and a job runs through.
func scFlood(t *testing.T, n *network, r *row) {
	targets := []peer.AddrInfo{n.c.addrInfo(), n.h1.addrInfo(), n.h2.addrInfo(), n.h3.addrInfo()}
	g := newRawGossip(t, targets)
	n.label(g.id, "flooder")
	g.ready(t)
	before := gossipCounts(t, n.c)
	grayBefore := n.c.logCount("graylisted peer; dropping RPC")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Watch the consumer's API latency during the flood.
	var worst time.Duration
	var mu sync.Mutex
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			s := time.Now()
			_, err := n.c.client().Info(ctx)
			d := time.Since(s)
			mu.Lock()
			if err != nil {
				d = time.Hour
			}
			worst = max(worst, d)
			mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	const offers, garbage, oversized, bids = 3000, 500, 20, 500
	sent := 0
	now := time.Now()
	for i := range offers {
		o := &protocol.Offer{Worker: g.id, Seq: uint64(i + 1), MinPrice: 1, Capacity: 1000, Slots: 1000, Expires: now.Add(5 * time.Minute).UnixMilli()}
		if i%10 == 9 {
			o.Seq = 1 // a replay
		}
		b, _ := protocol.Seal(g.key, o)
		if err := g.publish(ctx, protocol.TopicOffers, b); err != nil {
			t.Fatalf("publish: %v", err)
		}
		sent++
	}
	junk := make([]byte, 300)
	for range garbage {
		_, _ = rand.Read(junk)
		_ = g.publish(ctx, protocol.TopicOffers, junk)
		sent++
	}
	big := make([]byte, 20<<10)
	for range oversized {
		_, _ = rand.Read(big)
		_ = g.publish(ctx, protocol.TopicOffers, big)
		sent++
	}
	for i := range bids {
		b, _ := protocol.Seal(g.key, &protocol.Bid{Consumer: g.id, Group: protocol.NewID(), Seq: uint64(i + 1),
			Module: protocol.BlobCID([]byte("m")), Tasks: 1, MaxPrice: 1, Replicas: 2, Expires: now.Add(time.Minute).UnixMilli()})
		_ = g.publish(ctx, protocol.TopicBids, b)
		sent++
	}
	// A job runs through right after the flood.
	j := primesJob(4, primesWidth, priceAll)
	gid := n.submit(t, j)
	n.waitDone(t, gid, 2*time.Minute)
	close(stop)
	wg.Wait()
	v := n.judge(t, gid, j)
	n.fill(r, v)
	after := gossipCounts(t, n.c)
	acc := after["accepted"] - before["accepted"]
	rej := after["rejected"] - before["rejected"]
	ign := after["ignored"] - before["ignored"]
	if v.verified != v.tasks {
		t.Errorf("verified %d/%d after the flood", v.verified, v.tasks)
	}
	if worst > 5*time.Second {
		t.Errorf("the consumer's API took %v to answer during the flood", worst)
	}
	if _, ok := n.v.worker(g.id); ok {
		t.Errorf("the flooder became a worker")
	}
	gray := n.c.logCount("graylisted peer; dropping RPC") - grayBefore
	if acc > 20 {
		t.Errorf("the consumer accepted %.0f flood messages, beyond the per-signer rate limit", acc)
	}
	r.Outcome = fmt.Sprintf("%d messages published; the consumer validated %.0f (accepted %.0f within the rate limit, rejected %.0f, ignored %.0f), then graylisted the flooder and dropped %d RPCs unread; its API answered within %v; job verified",
		sent, acc+rej+ign, acc, rej, ign, gray, worst.Round(time.Millisecond))
}

// ---- malformed frames at every door ----

type frameCase struct {
	name       string
	raw        func(h *p2p.Host) []byte
	closeWrite bool
}

func frameCases(target peer.ID, victim peer.ID) []frameCase {
	rnd := func(n int) []byte {
		b := make([]byte, n)
		_, _ = rand.Read(b)
		return b
	}
	return []frameCase{
		{"random bytes", func(*p2p.Host) []byte { return rnd(64) }, true},
		{"length 4 GiB", func(*p2p.Host) []byte { return append([]byte{0xff, 0xff, 0xff, 0xf0}, rnd(32)...) }, false},
		{"length 4 MiB + 1", func(*p2p.Host) []byte { return append([]byte{0x00, 0x40, 0x00, 0x01}, rnd(32)...) }, false},
		{"truncated frame", func(*p2p.Host) []byte { return append([]byte{0, 0, 3, 0}, rnd(10)...) }, true},
		{"garbage envelope", func(*p2p.Host) []byte { return frame(rnd(500)) }, false},
		{"empty frame", func(*p2p.Host) []byte { return frame(nil) }, false},
		{"wrong message type", func(h *p2p.Host) []byte {
			b, _ := protocol.Seal(h.Key(), &protocol.Heartbeat{Worker: h.ID(), Seq: 1, Time: time.Now().UnixMilli()})
			return frame(b)
		}, false},
		{"truncated body", func(h *p2p.Host) []byte {
			b, _ := protocol.Seal(h.Key(), &protocol.Cancel{Consumer: h.ID(), Group: protocol.NewID(), Time: time.Now().UnixMilli()})
			return frame(b[:len(b)-3])
		}, false},
		{"signed by someone else", func(h *p2p.Host) []byte {
			b, _ := protocol.Seal(newKeyNoT(), &protocol.StatementRequest{Peer: victim, Nonce: protocol.NewID(), Time: time.Now().UnixMilli()})
			return frame(b)
		}, false},
	}
}

func newKeyNoT() crypto.PrivKey {
	k, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	return k
}

// scBadFrames opens raw streams for every Aspen protocol to the verifier,
// a worker and the consumer and writes garbage: malformed, oversized,
// truncated, wrongly typed and wrongly signed frames. Each is refused or
// its stream reset; everyone keeps serving.
func scBadFrames(t *testing.T, n *network, r *row) {
	a := attacker(t, n, n.v.addrInfo(), n.h1.addrInfo(), n.c.addrInfo())
	protos := append(append([]string(nil), p2p.RequestProtocols...), protocol.ProtoBlob)
	type tally struct{ resets, refusals, other int }
	per := map[string]*tally{}
	total := 0
	for _, target := range []struct {
		label string
		id    peer.ID
	}{{"verifier", n.v.id}, {"h1", n.h1.id}, {"consumer", n.c.id}} {
		tl := &tally{}
		per[target.label] = tl
		for _, proto := range protos {
			for _, fc := range frameCases(target.id, n.c.id) {
				total++
				ack, err := rawExchange(a, target.id, proto, fc.raw(a), fc.closeWrite)
				switch {
				case err != nil && strings.Contains(err.Error(), "protocols not supported"):
					tl.other++ // the node does not speak it (e.g. assign on the consumer)
				case err != nil:
					tl.resets++
				case ack != nil && !ack.OK:
					tl.refusals++
				default:
					t.Errorf("%s %s %s: accepted: %+v", target.label, proto, fc.name, ack)
				}
			}
		}
		// One maximal frame of garbage (exactly 4 MiB) per target.
		total++
		if ack, err := rawExchange(a, target.id, protocol.ProtoSubmit, frame(bytes.Repeat([]byte{0xa5}, protocol.MaxMessageSize)), false); err == nil && ack.OK {
			t.Errorf("%s accepted 4 MiB of garbage", target.label)
		}
	}
	// Still serving: a statement from the verifier, the consumer's blob
	// server (which answers a stranger as if it had no blob: blobs are
	// private), every API, and a job (whose workers fetch the module).
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var st protocol.Statement
	if err := a.Request(ctx, n.v.id, protocol.ProtoStatement, &protocol.StatementRequest{Peer: a.ID(), Nonce: protocol.NewID(), Time: time.Now().UnixMilli()}, &st); err != nil {
		t.Errorf("verifier statement after the garbage: %v", err)
	}
	mod := mustModule("primes")
	if _, err := a.FetchBlob(ctx, protocol.BlobCID(mod), []peer.ID{n.c.id}, tempStore(t), 64<<20); !errors.Is(err, p2p.ErrBlobNotFound) {
		t.Errorf("consumer blob server after the garbage: %v, want not found (a stranger)", err)
	}
	j := primesJob(4, primesWidth, priceAll)
	gid := n.submit(t, j)
	n.waitDone(t, gid, 2*time.Minute)
	v := n.judge(t, gid, j)
	n.fill(r, v)
	if v.verified != v.tasks {
		t.Errorf("verified %d/%d after the garbage", v.verified, v.tasks)
	}
	var parts []string
	for _, l := range []string{"verifier", "h1", "consumer"} {
		tl := per[l]
		parts = append(parts, fmt.Sprintf("%s %d resets/%d refusals", l, tl.resets, tl.refusals))
	}
	r.Outcome = fmt.Sprintf("%d bad frames on %d protocols: %s; all still serve (statement, blob server answers, job verified)", total, len(protos), strings.Join(parts, ", "))
}

// scFrontRun: a funded peer watches the bid topic and, the moment the
// consumer announces a group, submits a group with the same ID to the
// verifier under its own name (the consumer publishes its Bid once the
// verifier holds its group, so the squatter should lose the race).
func scFrontRun(t *testing.T, n *network, r *row) {
	key := newKey(t)
	a := testHost(t, key, p2p.StoreBlobs(tempStore(t)), n.v.addrInfo())
	defer a.Close()
	n.label(a.ID(), "squatter")
	n.v.credit(t, a.ID(), "10")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := a.Connect(ctx, n.c.addrInfo()); err != nil {
		t.Fatal(err)
	}
	// Both ways: the consumer sends its bid only to peers it knows are
	// subscribed (it learns that from the squatter's hello, which a loaded
	// machine can process after the squatter has processed the consumer's).
	waitFor(t, 30*time.Second, "the squatter and the consumer on each other's bid topic", func() (bool, error) {
		seen := false
		for _, p := range a.TopicPeers(protocol.TopicBids) {
			seen = seen || p == n.c.id
		}
		if !seen {
			return false, nil
		}
		ps, err := n.c.client().Peers(ctx)
		if err != nil {
			return false, err
		}
		for _, p := range ps {
			if p.ID == a.ID().String() && slices.Contains(p.Topics, protocol.TopicBids) {
				return true, nil
			}
		}
		return false, nil
	})
	type squat struct {
		group protocol.ID
		err   error
		took  time.Duration
	}
	squats := make(chan squat, 4)
	a.OnBid(func(from peer.ID, b *protocol.Bid, _ []byte) {
		if b.Consumer != n.c.id {
			return
		}
		s := time.Now()
		go func() {
			in := []byte("2 3")
			sub := &protocol.Submit{Consumer: a.ID(), Group: b.Group, Module: b.Module, ModuleSize: 1, MaxPrice: b.MaxPrice,
				Replicas: 2, TimeoutMillis: 60_000, Time: time.Now().UnixMilli(),
				Tasks: []protocol.TaskInput{{Index: 0, Input: protocol.BlobCID(in), Size: uint64(len(in)), Inline: in}}}
			var ack protocol.Ack
			err := a.Request(ctx, n.v.id, protocol.ProtoSubmit, sub, &ack)
			squats <- squat{b.Group, err, time.Since(s)}
		}()
	})
	// A big group: the consumer stores and reads back its inputs between
	// publishing the bid and sending the submit.
	j := job{module: mustModule("primes"), maxPrice: priceAll, timeout: "1m"}
	for i := range 1000 {
		j.inputs = append(j.inputs, fmt.Appendf(nil, "%d %d", 2+i, 3+i))
	}
	cl := n.c.client()
	mod, err := cl.PutBlob(ctx, j.module)
	if err != nil {
		t.Fatal(err)
	}
	req := client.SubmitRequest{Name: "front-run", Module: mod, MaxPrice: j.maxPrice, Replicas: 2, Timeout: j.timeout}
	for _, in := range j.inputs {
		req.Inputs = append(req.Inputs, client.Input{Data: in})
	}
	resp, subErr := cl.Submit(ctx, req)
	var sq squat
	select {
	case sq = <-squats:
	case <-time.After(30 * time.Second):
		t.Fatal("the squatter never saw the consumer's bid")
	}
	var gid string
	if resp != nil {
		gid = resp.ID
	}
	won := sq.err == nil
	switch {
	case won && subErr == nil:
		t.Errorf("both the squatter and the consumer own group %s", sq.group)
	case won:
		r.Outcome = fmt.Sprintf("the squatter won the race (%v after the bid): the consumer's group was refused (%v) — a denial of service", sq.took.Round(time.Millisecond), subErr)
		t.Logf("BUG: %s", r.Outcome)
	case subErr != nil:
		t.Errorf("the squatter lost (%v) and the consumer was refused too: %v", sq.err, subErr)
	default:
		r.Outcome = fmt.Sprintf("the consumer won the race; the squatter was refused (%v)", sq.err)
	}
	// Stop both groups; their escrow comes back.
	if gid != "" {
		if _, err := cl.Cancel(ctx, gid); err != nil && subErr == nil {
			t.Errorf("cancel: %v", err)
		}
	}
	if won {
		var ack protocol.Ack
		_ = a.Request(ctx, n.v.id, protocol.ProtoCancel, &protocol.Cancel{Consumer: a.ID(), Group: sq.group, Time: time.Now().UnixMilli()}, &ack)
	}
	waitFor(t, 2*time.Minute, "the verifier to finish the group's tasks", func() (bool, error) {
		vg, err := n.v.group(sq.group.String())
		return err == nil && vg.Counts["verified"]+vg.Counts["failed"]+vg.Counts["canceled"] == len(vg.Tasks), err
	})
	if gid != "" && subErr == nil {
		n.waitDone(t, gid, 2*time.Minute)
		v := n.judge(t, gid, j)
		n.fill(r, v)
		r.Wrong = fmt.Sprintf("%d/%d (rest canceled)", v.wrongAccepted, v.verified)
	} else {
		vg, _ := n.v.group(sq.group.String())
		r.Paid = n.paidSummary(vg)
	}
}
