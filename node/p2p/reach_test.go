package p2p

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	relayclient "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/aspen-market/aspen/protocol"
)

// relayTrio builds a relay R offering a relay service within limits, a
// server A holding st that reserves a slot on R, and a client B that knows
// A only by its relayed address through R. On loopback nothing is
// "public", so there is no hole punching: what B gets is a relayed
// connection unless someone dials directly.
func relayTrio(t *testing.T, st *memStore, limits RelayLimits, mutateB func(*Config)) (r, a, b *Host) {
	t.Helper()
	limits.allowPrivate = true
	r = newHost(t, func(c *Config) { c.RelayService = &limits })
	a = newHost(t, func(c *Config) { c.Blobs = st })
	b = newHost(t, mutateB)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := relayclient.Reserve(ctx, a.Libp2p(), r.AddrInfo()); err != nil {
		t.Fatalf("reserve a slot on the relay: %v", err)
	}
	var circuit []ma.Multiaddr
	for _, ra := range r.AddrInfo().Addrs {
		circuit = append(circuit, ra.Encapsulate(ma.StringCast("/p2p/"+r.ID().String()+"/p2p-circuit")))
	}
	b.Libp2p().Peerstore().AddAddrs(a.ID(), circuit, time.Hour)
	b.Libp2p().Peerstore().AddAddrs(r.ID(), r.AddrInfo().Addrs, time.Hour)
	return r, a, b
}

func TestBlobOverRelayWithinLimits(t *testing.T) {
	st := newMemStore()
	small := randBytes(t, 100<<10)
	cSmall := st.put(small)
	cSecond := st.put(randBytes(t, 100<<10))
	cBig := st.put(randBytes(t, 300<<10))
	limits := DefaultRelayLimits()
	limits.Data = 256 << 10
	_, a, b := relayTrio(t, st, limits, func(c *Config) {
		c.RelayBlobMax = 128 << 10
		c.DirectConnWait = 500 * time.Millisecond
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sink := newMemStore()

	// Small: goes through the relay, whose limit is announced to B.
	if _, err := b.FetchBlob(ctx, cSmall, []peer.ID{a.ID()}, sink, int64(len(small))); err != nil {
		t.Fatalf("small blob over the relay: %v", err)
	}
	if got, _ := sink.get(cSmall); !bytes.Equal(got, small) {
		t.Fatal("small blob: wrong bytes")
	}
	if p := b.PathTo(a.ID()); p != PathRelayed {
		t.Fatalf("path %s, want relayed", p)
	}
	var limit uint64
	for _, c := range b.Libp2p().Network().ConnsToPeer(a.ID()) {
		limit, _ = c.Stat().Extra[relayclient.StatLimitData].(uint64)
	}
	if limit != 256<<10 {
		t.Fatalf("relayed connection's data limit %d, want the relay's %d", limit, 256<<10)
	}

	// A second 100 KiB blob on the same relayed connection would pass the
	// relay's limit (minus headroom): B does not start it.
	_, err := b.FetchBlob(ctx, cSecond, []peer.ID{a.ID()}, sink, 100<<10)
	if !errors.Is(err, ErrRelayLimit) {
		t.Fatalf("second blob over a spent relayed connection: %v, want ErrRelayLimit", err)
	}
	// Over RelayBlobMax: refused the relay outright, fails once
	// DirectConnWait passes without a direct connection.
	start := time.Now()
	_, err = b.FetchBlob(ctx, cBig, []peer.ID{a.ID()}, sink, protocol.MaxBlobSize)
	if !errors.Is(err, ErrRelayLimit) {
		t.Fatalf("big blob with only a relayed connection: %v, want ErrRelayLimit", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("gave up after %v", d)
	}
	if _, ok := sink.get(cBig); ok {
		t.Fatal("big blob stored")
	}
}

// TestBigBlobWaitsForDirectConnection: a blob too large for the relay
// waits for a direct connection; when the peer dials back (what libp2p's
// DCUtR does when the fetching side is reachable) the fetch completes over
// it.
func TestBigBlobWaitsForDirectConnection(t *testing.T) {
	st := newMemStore()
	big := randBytes(t, 2<<20)
	c := st.put(big)
	waiting := make(chan struct{})
	var once sync.Once
	_, a, b := relayTrio(t, st, DefaultRelayLimits(), func(c *Config) {
		c.DirectConnWait = 20 * time.Second
		c.Logger = slog.New(&signalHandler{match: "waiting for a direct connection", fire: func() { once.Do(func() { close(waiting) }) }})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// B connects through the relay first.
	if err := b.Libp2p().Connect(ctx, peer.AddrInfo{ID: a.ID()}); err != nil {
		t.Fatal(err)
	}
	if p := b.PathTo(a.ID()); p != PathRelayed {
		t.Fatalf("path %s, want relayed", p)
	}
	done := make(chan error, 1)
	sink := newMemStore()
	go func() {
		_, err := b.FetchBlob(ctx, c, []peer.ID{a.ID()}, sink, int64(len(big)))
		done <- err
	}()
	select {
	case <-waiting:
	case err := <-done:
		t.Fatalf("fetch ended before waiting for a direct connection: %v", err)
	case <-ctx.Done():
		t.Fatal("fetch never waited for a direct connection")
	}
	// A dials B directly, as the side of an inbound relayed connection
	// does when the other side is reachable.
	if err := a.Libp2p().Connect(network.WithForceDirectDial(ctx, "test"), b.AddrInfo()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("fetch after a direct connection came up: %v", err)
	}
	if got, _ := sink.get(c); !bytes.Equal(got, big) {
		t.Fatal("wrong bytes")
	}
	if p := b.PathTo(a.ID()); p != PathDirect {
		t.Fatalf("path %s, want direct", p)
	}
}

func TestRelayServiceRefusesUnknownPeers(t *testing.T) {
	st := newMemStore()
	known := newKey(t)
	limits := DefaultRelayLimits()
	limits.allowPrivate = true
	knownID, _ := peer.IDFromPrivateKey(known)
	limits.AllowReserve = func(p peer.ID) bool { return p == knownID }
	r := newHost(t, func(c *Config) { c.RelayService = &limits })
	stranger := newHost(t, func(c *Config) { c.Blobs = st })
	friend := newHost(t, func(c *Config) { c.Key = known })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := relayclient.Reserve(ctx, stranger.Libp2p(), r.AddrInfo()); err == nil {
		t.Fatal("a peer the relay does not know got a reservation")
	}
	if _, err := relayclient.Reserve(ctx, friend.Libp2p(), r.AddrInfo()); err != nil {
		t.Fatalf("known peer's reservation: %v", err)
	}
}

func TestReachabilityReported(t *testing.T) {
	var mu sync.Mutex
	var seen []Reachability
	priv := newHost(t, func(c *Config) {
		c.ForceReachability = network.ReachabilityPrivate
		c.OnReachability = func(r Reachability) {
			mu.Lock()
			seen = append(seen, r)
			mu.Unlock()
		}
	})
	waitFor(t, 10*time.Second, "private reachability", func() bool {
		r := priv.Reachability()
		return r.Status == ReachPrivate && r.Inbound == InboundNone && r.AutoNAT == ReachPrivate
	})
	mu.Lock()
	n := len(seen)
	last := Reachability{}
	if n > 0 {
		last = seen[n-1]
	}
	mu.Unlock()
	if n == 0 || last.Status != ReachPrivate {
		t.Fatalf("OnReachability saw %d changes, last %+v", n, last)
	}
	pub := newHost(t, func(c *Config) { c.ForceReachability = network.ReachabilityPublic })
	waitFor(t, 10*time.Second, "public reachability", func() bool {
		r := pub.Reachability()
		return r.Status == ReachPublic && r.Inbound == InboundDirect
	})
	// Loopback: nothing to ask AutoNAT about, so it stays unknown.
	plain := newHost(t, nil)
	if r := plain.Reachability(); r.Status != ReachUnknown || r.Inbound != InboundUnknown || len(r.Public) != 0 {
		t.Fatalf("loopback host: %+v", r)
	}
}

func TestConfigValidateReachability(t *testing.T) {
	cfg := testConfig(t)
	cfg.ForceReachability = network.Reachability(7)
	if err := cfg.Validate(); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("bad forced reachability: %v", err)
	}
	cfg = testConfig(t)
	l := DefaultRelayLimits()
	l.Data = 0
	cfg.RelayService = &l
	if err := cfg.Validate(); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("relay without a data limit: %v", err)
	}
	cfg = testConfig(t)
	cfg.Relays = []peer.AddrInfo{{}}
	if err := cfg.Validate(); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("relay without ID: %v", err)
	}
}

// signalHandler calls fire for every record whose message contains match.
type signalHandler struct {
	match string
	fire  func()
}

func (h *signalHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *signalHandler) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.match) {
		h.fire()
	}
	return nil
}
func (h *signalHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *signalHandler) WithGroup(string) slog.Handler      { return h }
