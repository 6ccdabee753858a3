package integration

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/aspen-market/aspen/node/p2p"
	"github.com/aspen-market/aspen/protocol"
)

// Abuse that costs the attacker little: issue 17's rows.

// rssMiB is p's resident set size (Linux /proc), 0 when unknown.
func (p *proc) rssMiB() float64 {
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// apiWatch measures the worst latency of a node's /v1/info while it runs.
type apiWatch struct {
	stop  chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	worst time.Duration
}

func watchAPI(ctx context.Context, nd *nodeProc) *apiWatch {
	w := &apiWatch{stop: make(chan struct{})}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			s := time.Now()
			_, err := nd.client().Info(ctx)
			d := time.Since(s)
			if err != nil {
				d = time.Hour
			}
			w.mu.Lock()
			w.worst = max(w.worst, d)
			w.mu.Unlock()
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

func (w *apiWatch) end() time.Duration {
	close(w.stop)
	w.wg.Wait()
	return w.worst
}

// scFreshSigners: one peer relays 2,500 offers, each signed by a fresh key
// that never registered (so carrying no rating of the verifier's). Gossip
// admission refuses them before they take any table space; the relay is
// graylisted; the consumer's offer table keeps only rated workers; a job
// runs through.
func scFreshSigners(t *testing.T, n *network, r *row) {
	targets := []peer.AddrInfo{n.c.addrInfo(), n.h1.addrInfo()}
	// Messages as Aspen peers send them (no pubsub signature or author,
	// content IDs), so they reach the validator rather than being dropped
	// by pubsub's own signing policy.
	g := newRawGossip(t, targets, pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign), pubsub.WithNoAuthor(),
		pubsub.WithMessageIdFn(func(m *pb.Message) string {
			h := sha256.New()
			h.Write([]byte(m.GetTopic()))
			h.Write([]byte{0})
			h.Write(m.Data)
			return string(h.Sum(nil))
		}))
	n.label(g.id, "relay of fresh signers")
	g.ready(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	offersBefore, err := n.c.client().Offers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before := gossipCounts(t, n.c)
	rssBefore := n.c.rssMiB()
	watch := watchAPI(ctx, n.c)
	const count = 2500
	now := time.Now()
	for range count {
		k, _, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := peer.IDFromPrivateKey(k)
		b, err := protocol.Seal(k, &protocol.Offer{Worker: id, Seq: 1, MinPrice: 1, Capacity: 100, Slots: 100, Expires: now.Add(5 * time.Minute).UnixMilli()})
		if err != nil {
			t.Fatal(err)
		}
		if err := g.publish(ctx, protocol.TopicOffers, b); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	rssDuring := n.c.rssMiB()
	j := primesJob(4, primesWidth, priceAll)
	gid := n.submit(t, j)
	n.waitDone(t, gid, 2*time.Minute)
	worst := watch.end()
	v := n.judge(t, gid, j)
	n.fill(r, v)
	after := gossipCounts(t, n.c)
	offersAfter, err := n.c.client().Offers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v.verified != v.tasks {
		t.Errorf("verified %d/%d after the flood", v.verified, v.tasks)
	}
	if after["rejected"]-before["rejected"] < 1 {
		t.Errorf("the consumer rejected none of the fresh signers' offers")
	}
	if after["accepted"]-before["accepted"] > 100 || len(offersAfter) > len(offersBefore)+5 {
		t.Errorf("the consumer took the fresh signers' offers: accepted %.0f, offers %d → %d",
			after["accepted"]-before["accepted"], len(offersBefore), len(offersAfter))
	}
	r.Outcome = fmt.Sprintf("%d offers from fresh signers via one relay: the consumer rejected %.0f (no rating), graylisted the relay and dropped %.0f over its relay rate before validation; offer table %d → %d (rated workers only); consumer RSS %.0f → %.0f → %.0f MiB, API worst %v; job verified",
		count, after["rejected"]-before["rejected"], after["relay_dropped"]-before["relay_dropped"], len(offersBefore), len(offersAfter), rssBefore, rssDuring, n.c.rssMiB(), worst.Round(time.Millisecond))
}

// scStrangerBlobs: a peer that learned the CIDs (module CIDs travel in
// bids; results in releases) asks the consumer for the module and an
// input and a worker for a result: refused as if absent.
func scStrangerBlobs(t *testing.T, n *network, r *row) {
	j := echoJob(2, 8<<10, priceAll) // inputs and results over 4 KiB: fetched as blobs
	gid := n.submit(t, j)
	n.waitDone(t, gid, 2*time.Minute)
	v := n.judge(t, gid, j)
	n.fill(r, v)
	a := attacker(t, n, n.c.addrInfo(), n.h1.addrInfo(), n.h2.addrInfo(), n.h3.addrInfo())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	asks := []struct {
		what string
		c    string
		from []peer.ID
	}{
		{"module from the consumer", protocol.BlobCID(j.module).String(), []peer.ID{n.c.id}},
		{"input from the consumer", protocol.BlobCID(j.inputs[0]).String(), []peer.ID{n.c.id}},
	}
	for _, res := range v.results {
		if res.Result != "" {
			asks = append(asks, struct {
				what string
				c    string
				from []peer.ID
			}{"result from the workers", res.Result, []peer.ID{n.h1.id, n.h2.id, n.h3.id}})
			break
		}
	}
	for _, q := range asks {
		c, err := protocol.ParseCID(q.c)
		if err != nil {
			t.Fatal(err)
		}
		_, err = a.FetchBlob(ctx, c, q.from, tempStore(t), 64<<20)
		if !errors.Is(err, p2p.ErrBlobNotFound) {
			t.Errorf("stranger fetching the %s: %v, want not found", q.what, err)
		}
	}
	r.Outcome = fmt.Sprintf("a stranger knowing the CIDs asked the consumer for the module and an input and the workers for a result (%d fetches): each answered not found, like an absent blob; the group verified", len(asks))
	if v.verified != v.tasks {
		t.Errorf("verified %d/%d", v.verified, v.tasks)
	}
}
