package main

import (
	"context"
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/aspen-market/aspen/node/p2p"
	"github.com/aspen-market/aspen/protocol"
)

// mesh is n Aspen hosts in this process recording when each offer
// reaches each of them (the logic of node/p2p's runMesh test helper).
type mesh struct {
	hosts []*p2p.Host
	recs  []*arrivals
}

type arrivals struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

func offerKey(w peer.ID, seq uint64) string { return fmt.Sprintf("%s/%d", w, seq) }

// newMesh builds n hosts: on loopback TCP or on a mocknet; each is linked
// to its predecessor and to degree-1 random others. Gossip allows each
// signer rate offers per second, burst burst.
func newMesh(ctx context.Context, n, degree int, mock bool, rate float64, burst int) (*mesh, func(), error) {
	m := &mesh{}
	var mn mocknet.Mocknet
	if mock {
		mn = mocknet.New()
	}
	closeAll := func() {
		for _, h := range m.hosts {
			h.Close()
		}
		if mn != nil {
			mn.Close()
		}
	}
	for i := range n {
		key, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			return nil, closeAll, err
		}
		cfg := p2p.DefaultConfig()
		cfg.Key = key
		cfg.GossipRate, cfg.GossipBurst = rate, burst
		if mock {
			var lh host.Host
			lh, err = mn.AddPeer(key, ma.StringCast(fmt.Sprintf("/ip4/10.%d.%d.%d/tcp/4001", i>>16&255, i>>8&255, i&255)))
			if err != nil {
				return nil, closeAll, err
			}
			cfg.Host = lh
		} else {
			cfg.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"}
		}
		h, err := p2p.New(cfg)
		if err != nil {
			return nil, closeAll, err
		}
		m.hosts = append(m.hosts, h)
		r := &arrivals{seen: map[string]time.Time{}}
		m.recs = append(m.recs, r)
		h.OnOffer(func(from peer.ID, o *protocol.Offer, raw []byte) {
			now := time.Now()
			r.mu.Lock()
			r.seen[offerKey(from, o.Seq)] = now
			r.mu.Unlock()
		})
	}
	if mock {
		if err := mn.LinkAll(); err != nil {
			return nil, closeAll, err
		}
	}
	for _, h := range m.hosts {
		if err := h.Start(ctx); err != nil {
			return nil, closeAll, err
		}
	}
	rng := mrand.New(mrand.NewPCG(1, 2))
	link := func(a, b int) error {
		if mock {
			_, err := mn.ConnectPeers(m.hosts[a].ID(), m.hosts[b].ID())
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return m.hosts[a].Connect(cctx, m.hosts[b].AddrInfo())
	}
	for i := 1; i < n; i++ {
		if err := link(i-1, i); err != nil {
			return nil, closeAll, err
		}
		for range degree - 1 {
			if j := rng.IntN(n); j != i && j != i-1 {
				if err := link(i, j); err != nil {
					return nil, closeAll, err
				}
			}
		}
	}
	// Warm up: publish from peer 0 until an offer reaches every peer.
	deadline := time.Now().Add(90 * time.Second)
	for {
		o := &protocol.Offer{MinPrice: 40_000, Capacity: 1, Slots: 1}
		if err := m.hosts[0].PublishOffer(ctx, o); err != nil {
			return nil, closeAll, err
		}
		key := offerKey(m.hosts[0].ID(), o.Seq)
		end := time.Now().Add(time.Second)
		for time.Now().Before(end) && m.reached(key) < n-1 {
			time.Sleep(20 * time.Millisecond)
		}
		if m.reached(key) == n-1 {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, closeAll, fmt.Errorf("gossip meshes did not form among %d peers", n)
		}
	}
	return m, closeAll, nil
}

func (m *mesh) reached(key string) int {
	c := 0
	for _, r := range m.recs {
		r.mu.Lock()
		if _, ok := r.seen[key]; ok {
			c++
		}
		r.mu.Unlock()
	}
	return c
}

// latencies returns, for an offer published at t0, the delay to each
// peer it reached.
func (m *mesh) latencies(key string, t0 time.Time) durations {
	var out durations
	for _, r := range m.recs {
		r.mu.Lock()
		if t, ok := r.seen[key]; ok {
			out = append(out, t.Sub(t0))
		}
		r.mu.Unlock()
	}
	return out
}

type published struct {
	key string
	at  time.Time
	lag time.Duration // behind its schedule
}

// figGossip: 20 peers on loopback, 100 offers/s (delivered ≥ 99.9%, p99
// ≤ 20 ms); 200 peers on a mocknet, time for an offer to reach 99% of
// them (≤ 2 s).
func figGossip(ctx context.Context, e *env) ([]Row, error) {
	secs := 10
	offers200 := 20
	if e.quick {
		secs, offers200 = 3, 5
	}
	var rows []Row

	// 20 peers, loopback TCP. 100 offers/s from 20 authors is 5 per author
	// per second, above the production per-signer limit (GossipRate 2/s,
	// burst 10) meant for offers "about once a second": rate and burst
	// are raised 5× here (10/s, burst 50: the same 10 s of backlog
	// tolerated at 5 offers/s as production tolerates at 1/s), so the
	// figure measures delivery, not the flood limit. Everything else is
	// the production configuration.
	const n = 20
	prod := p2p.DefaultConfig()
	benchRate, benchBurst := 5*prod.GossipRate, 5*prod.GossipBurst
	m, closeM, err := newMesh(ctx, n, 5, false, benchRate, benchBurst)
	if err != nil {
		closeM()
		return nil, err
	}
	// Open loop: every peer publishes on its own schedule, offer k of peer
	// i at start + (k·n + i)/perSec, so a slow publish delays neither the
	// others nor the total rate. Latency runs from the start of
	// PublishOffer (sealing included) to the subscriber's handler, on one
	// clock (one process).
	const perSec = 100
	stats0 := m.stats()
	busy0, total0 := machineBusy()
	cpu0 := cpuTime()
	pubs := make([]published, secs*perSec)
	start := time.Now().Add(50 * time.Millisecond)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i, h := range m.hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := i; j < len(pubs); j += n {
				due := start.Add(time.Duration(j) * time.Second / perSec)
				time.Sleep(time.Until(due))
				o := &protocol.Offer{MinPrice: 40_000, Capacity: 1, Slots: 1}
				t0 := time.Now()
				if err := h.PublishOffer(ctx, o); err != nil {
					errs <- err
					return
				}
				pubs[j] = published{offerKey(h.ID(), o.Seq), t0, t0.Sub(due)}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		closeM()
		return nil, err
	}
	first, last := pubs[0].at, pubs[0].at
	var lags durations
	for _, p := range pubs {
		first, last = minTime(first, p.at), maxTime(last, p.at)
		lags = append(lags, p.lag)
	}
	// Stragglers: up to 2 s after the last publish.
	for end := last.Add(2 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if m.reachedAll(pubs) {
			break
		}
	}
	cpu := cpuTime() - cpu0
	busy, total := machineBusy()
	var lat durations
	for _, p := range pubs {
		lat = append(lat, m.latencies(p.key, p.at)...)
	}
	stats := m.stats()
	closeM()
	expected := len(pubs) * (n - 1)
	// What the figure costs and what else ran: CPU per offer (all 20
	// peers) and the machine's busy CPUs, ours included, over the same
	// time (from /proc/stat; "?" where unavailable).
	wall := last.Sub(first) + time.Since(last)
	load := "?"
	if total > total0 {
		load = fmt.Sprintf("%.2f", float64(busy-busy0)/float64(total-total0)*float64(runtime.NumCPU()))
	}
	cost := fmt.Sprintf("CPU %.2f ms per offer (all %d peers), this process %.2f CPUs, the machine %s of %d CPUs busy",
		ms(cpu)/float64(len(pubs)), n, cpu.Seconds()/wall.Seconds(), load, runtime.NumCPU())
	rows = append(rows,
		Row{Figure: "6 gossip, 20 peers (loopback TCP), 100 offers/s: delivered", Value: 100 * float64(len(lat)) / float64(expected), Unit: "%"}.
			target("value", ">=", 99.9).note("%d offers over %.1f s (%.0f/s; publish lag behind schedule p99 %.1f ms), %d of %d deliveries; validators rejected %d, ignored %d (older than an offer already delivered from the same author, or a copy)",
			len(pubs), last.Sub(first).Seconds(), float64(len(pubs)-1)/last.Sub(first).Seconds(), ms(lags.pct(0.99)), len(lat), expected,
			stats.Rejected-stats0.Rejected, stats.Ignored-stats0.Ignored),
		Row{Figure: "6 gossip, 20 peers, 100 offers/s: delivery latency p99", Value: ms(lat.pct(0.99)), Unit: "ms"}.
			target("value", "<=", 20).note("per-signer gossip limit raised to %.0f/s, burst %d (production %.0f/s, burst %d); p50 %.2f ms, p90 %.1f ms, p95 %.1f ms, max %.1f ms; %d deliveries over 50 ms", benchRate, benchBurst, prod.GossipRate, prod.GossipBurst,
			ms(lat.pct(0.5)), ms(lat.pct(0.9)), ms(lat.pct(0.95)), ms(slices.Max(append(lat, 0))), over(lat, 50*time.Millisecond)).
			note("%s", cost),
	)

	// 200 peers on a mocknet, offers published one at a time from
	// different peers (production gossip limits).
	const big = 200
	m, closeM, err = newMesh(ctx, big, 8, true, prod.GossipRate, prod.GossipBurst)
	if err != nil {
		closeM()
		return rows, err
	}
	defer closeM()
	need := (99*(big-1) + 99) / 100 // 99% of the other peers, rounded up
	var t99 durations
	delivered := 0
	for k := range offers200 {
		h := m.hosts[1+(k*7919)%(big-1)]
		o := &protocol.Offer{MinPrice: 40_000, Capacity: 1, Slots: 1}
		t0 := time.Now()
		if err := h.PublishOffer(ctx, o); err != nil {
			return rows, err
		}
		key := offerKey(h.ID(), o.Seq)
		for time.Since(t0) < 10*time.Second && m.reached(key) < big-1 {
			time.Sleep(5 * time.Millisecond)
		}
		l := m.latencies(key, t0)
		delivered += len(l)
		if len(l) >= need {
			t99 = append(t99, l.pct(float64(need)/float64(len(l))))
		} else {
			t99 = append(t99, 10*time.Second) // never reached 99%
		}
	}
	rows = append(rows, Row{Figure: "6 gossip, 200 peers (mocknet): time for an offer to reach 99% of peers (worst offer)", Value: ms(slices.Max(t99)), Unit: "ms"}.
		target("value", "<=", 2000).note("%d offers, median %.0f ms; %.2f%% of all deliveries made within 10 s", offers200, ms(t99.pct(0.5)),
		100*float64(delivered)/float64(offers200*(big-1))))
	return rows, nil
}

// machineBusy returns the machine's busy and total CPU time from the first
// line of /proc/stat (clock ticks; zeros where unavailable).
func machineBusy() (busy, total uint64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0
	}
	for i, x := range f[1:] {
		v, err := strconv.ParseUint(x, 10, 64)
		if err != nil {
			return 0, 0
		}
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total
}

// stats sums the hosts' gossip validation counters.
func (m *mesh) stats() p2p.GossipStats {
	var s p2p.GossipStats
	for _, h := range m.hosts {
		g := h.GossipStats()
		s.Accepted += g.Accepted
		s.Rejected += g.Rejected
		s.Ignored += g.Ignored
	}
	return s
}

// reachedAll reports whether every offer reached every other peer.
func (m *mesh) reachedAll(pubs []published) bool {
	for _, p := range pubs {
		if m.reached(p.key) < len(m.hosts)-1 {
			return false
		}
	}
	return true
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func over(d durations, limit time.Duration) int {
	n := 0
	for _, x := range d {
		if x > limit {
			n++
		}
	}
	return n
}
