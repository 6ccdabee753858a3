package p2p

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/aspen-market/aspen/protocol"
)

// meshResult is what one many-peer gossip run measured.
type meshResult struct {
	delivered, expected int
	latencies           []time.Duration
}

func (r meshResult) ratio() float64 { return float64(r.delivered) / float64(r.expected) }

func (r meshResult) pct(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	l := slices.Clone(r.latencies)
	slices.Sort(l)
	return l[min(len(l)-1, int(p*float64(len(l))))]
}

// runMesh builds n Aspen hosts on a mocknet, each linked to its
// predecessor and to degree-1 random others, warms the meshes up, then
// publishes msgs offers from distinct random peers and counts how many
// peers each reaches within wait.
func runMesh(tb testing.TB, n, degree, msgs int, wait time.Duration) meshResult {
	tb.Helper()
	mn := mocknet.New()
	tb.Cleanup(func() { mn.Close() })
	hosts := make([]*Host, n)
	type rec struct {
		mu   sync.Mutex
		seen map[string]time.Time
	}
	recs := make([]*rec, n)
	for i := range n {
		key := newKey(tb)
		addr := ma.StringCast(fmt.Sprintf("/ip4/10.%d.%d.%d/tcp/4001", i>>16&255, i>>8&255, i&255))
		lh, err := mn.AddPeer(key, addr)
		if err != nil {
			tb.Fatal(err)
		}
		cfg := DefaultConfig()
		cfg.Key, cfg.Host = key, lh
		cfg.GossipBurst = 100
		h, err := New(cfg)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { h.Close() })
		hosts[i] = h
		r := &rec{seen: map[string]time.Time{}}
		recs[i] = r
		h.OnOffer(func(from peer.ID, o *protocol.Offer, raw []byte) {
			r.mu.Lock()
			r.seen[fmt.Sprintf("%s/%d", from, o.Seq)] = time.Now()
			r.mu.Unlock()
		})
	}
	if err := mn.LinkAll(); err != nil {
		tb.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 1; i < n; i++ {
		if _, err := mn.ConnectPeers(hosts[i-1].ID(), hosts[i].ID()); err != nil {
			tb.Fatal(err)
		}
		for range degree - 1 {
			j := rng.IntN(n)
			if j != i && j != i-1 {
				if _, err := mn.ConnectPeers(hosts[i].ID(), hosts[j].ID()); err != nil {
					tb.Fatal(err)
				}
			}
		}
	}
	for _, h := range hosts {
		if err := h.Start(context.Background()); err != nil {
			tb.Fatal(err)
		}
	}
	seenBy := func(key string) int {
		c := 0
		for _, r := range recs {
			r.mu.Lock()
			if _, ok := r.seen[key]; ok {
				c++
			}
			r.mu.Unlock()
		}
		return c
	}
	// Warm up: publish from peer 0 until one offer reaches every peer
	// (meshes formed).
	deadline := time.Now().Add(60 * time.Second)
	for {
		o := testOffer(hosts[0].ID())
		if err := hosts[0].PublishOffer(context.Background(), o); err != nil {
			tb.Fatal(err)
		}
		key := fmt.Sprintf("%s/%d", hosts[0].ID(), o.Seq)
		done := false
		end := time.Now().Add(time.Second)
		for !done && time.Now().Before(end) {
			done = seenBy(key) == n-1
			time.Sleep(20 * time.Millisecond)
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("meshes never formed")
		}
	}
	res := meshResult{}
	for m := range msgs {
		src := hosts[1+(m*7919)%(n-1)]
		o := testOffer(src.ID())
		start := time.Now()
		if err := src.PublishOffer(context.Background(), o); err != nil {
			tb.Fatal(err)
		}
		key := fmt.Sprintf("%s/%d", src.ID(), o.Seq)
		end := start.Add(wait)
		for time.Now().Before(end) {
			if seenBy(key) == n-1 {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		res.expected += n - 1
		for _, r := range recs {
			r.mu.Lock()
			if t, ok := r.seen[key]; ok {
				res.delivered++
				res.latencies = append(res.latencies, t.Sub(start))
			}
			r.mu.Unlock()
		}
	}
	return res
}

func TestGossipManyPeers(t *testing.T) {
	if testing.Short() {
		t.Skip("many peers")
	}
	r := runMesh(t, 50, 6, 10, 10*time.Second)
	t.Logf("50 peers: delivered %d/%d (%.2f%%), p50 %v, p99 %v", r.delivered, r.expected, 100*r.ratio(), r.pct(0.5), r.pct(0.99))
	if r.ratio() < 0.99 {
		t.Fatalf("delivered %.2f%%, want >= 99%%", 100*r.ratio())
	}
}

// BenchmarkGossipDelivery publishes offers through 200 mocknet peers and
// reports the fraction of peers reached and delivery latency. Run with
// -benchtime=1x.
func BenchmarkGossipDelivery(b *testing.B) {
	for range b.N {
		r := runMesh(b, 200, 8, 20, 10*time.Second)
		b.ReportMetric(100*r.ratio(), "%delivered")
		b.ReportMetric(float64(r.pct(0.5).Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(r.pct(0.99).Microseconds())/1000, "p99-ms")
	}
}
