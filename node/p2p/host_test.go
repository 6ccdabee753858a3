package p2p

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/store"
)

func TestConfigValidate(t *testing.T) {
	good := testConfig(t)
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	rsa, _, err := crypto.GenerateSecp256k1Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*Config){
		"no key":        func(c *Config) { c.Key = nil },
		"not ed25519":   func(c *Config) { c.Key = rsa },
		"no listen":     func(c *Config) { c.ListenAddrs = nil },
		"bad listen":    func(c *Config) { c.ListenAddrs = []string{"tcp/1"} },
		"watermarks":    func(c *Config) { c.ConnLow, c.ConnHigh = 10, 5 },
		"rate":          func(c *Config) { c.GossipRate = 0 },
		"chunk":         func(c *Config) { c.BlobChunkSize = 1 },
		"timeouts":      func(c *Config) { c.RequestTimeout = 0 },
		"score halves":  func(c *Config) { c.ScoreParams, _ = DefaultScoreParams() },
		"pinned w/o id": func(c *Config) { c.Pinned = []peer.AddrInfo{{}} },
	} {
		c := testConfig(t)
		mut(&c)
		if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: got %v", name, err)
		}
		if _, err := New(c); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: New accepted it: %v", name, err)
		}
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "node.key")
	k1, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v", st.Mode(), err)
	}
	k2, err := LoadOrCreateKey(path)
	if err != nil || !k1.Equals(k2) {
		t.Fatalf("reload gave another key: %v", err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKey(path); !errors.Is(err, ErrKeyFile) || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable key loaded: %v", err)
	}
	bad := filepath.Join(dir, "bad.key")
	if err := os.WriteFile(bad, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKey(bad); !errors.Is(err, ErrKeyFile) {
		t.Fatalf("garbage key loaded: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "sub")); len(entries) != 1 {
		t.Fatalf("temp files left behind: %v", entries)
	}
}

func TestParseAddrInfo(t *testing.T) {
	h := newHost(t, nil)
	for _, a := range h.Addrs() {
		pi, err := ParseAddrInfo(a.String())
		if err != nil || pi.ID != h.ID() || len(pi.Addrs) != 1 {
			t.Fatalf("%s: %+v %v", a, pi, err)
		}
		if !strings.HasSuffix(a.String(), "/p2p/"+h.ID().String()) {
			t.Fatalf("addr %s lacks /p2p/id", a)
		}
	}
	if pi, err := ParseAddrInfo(h.ID().String()); err != nil || pi.ID != h.ID() {
		t.Fatalf("bare id: %v", err)
	}
	for _, s := range []string{"", "/ip4/1.2.3.4/tcp/1", "nonsense", "/ip4/1.2.3.4/tcp/1/p2p/xyz"} {
		if _, err := ParseAddrInfo(s); !errors.Is(err, ErrBadAddr) {
			t.Errorf("%q: %v", s, err)
		}
	}
}

func TestPinnedPeerProtectedAndReconnected(t *testing.T) {
	verifier := newHost(t, nil)
	boot := newHost(t, nil)
	node := newHost(t, func(c *Config) {
		c.Pinned = []peer.AddrInfo{verifier.AddrInfo()}
		c.Bootstrap = []peer.AddrInfo{boot.AddrInfo()}
	})
	waitFor(t, 10*time.Second, "pinned and bootstrap peers connected", func() bool {
		return node.Connected(verifier.ID()) && node.Connected(boot.ID())
	})
	if !node.Libp2p().ConnManager().IsProtected(verifier.ID(), pinTag) {
		t.Fatal("verifier not protected")
	}
	for range 2 {
		if err := verifier.Libp2p().Network().ClosePeer(node.ID()); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "pinned peer reconnected", func() bool { return node.Connected(verifier.ID()) })
	}
}

func TestBootstrapRetriesUntilReachable(t *testing.T) {
	// The bootstrap peer is not up yet: dials fail, then succeed once it
	// listens (same key and address as announced).
	cfg := testConfig(t)
	cfg.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"}
	probe, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	addr := probe.Libp2p().Addrs()[0]
	id := probe.ID()
	probe.Close()
	node := newHost(t, func(c *Config) { c.Bootstrap = []peer.AddrInfo{{ID: id, Addrs: []ma.Multiaddr{addr}}} })
	waitFor(t, 5*time.Second, "failed dials", func() bool { return node.dialFailures.Load() >= 3 })
	cfg.ListenAddrs = []string{addr.String()}
	boot, err := New(cfg)
	if err != nil {
		t.Skipf("port taken meanwhile: %v", err)
	}
	t.Cleanup(func() { boot.Close() })
	// Well within the swarm's own 5 s dial backoff, which is bypassed.
	waitFor(t, 3*time.Second, "bootstrap connected", func() bool { return node.Connected(id) })
}

func TestCloseIsIdempotentAndRefusesWork(t *testing.T) {
	h := newHost(t, nil)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.PublishOffer(context.Background(), &protocol.Offer{Slots: 1}); !errors.Is(err, ErrClosed) {
		t.Fatalf("publish after close: %v", err)
	}
	if err := h.Request(context.Background(), h.ID(), protocol.ProtoCancel, &protocol.Cancel{}, &protocol.Ack{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("request after close: %v", err)
	}
	if err := h.Start(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("start after close: %v", err)
	}
}

func TestBlobWithRealStore(t *testing.T) {
	open := func() *store.Store {
		cfg := store.DefaultConfig()
		cfg.Dir = t.TempDir()
		s, err := store.Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	src, dst := open(), open()
	data := randBytes(t, 9<<20+77)
	c, err := src.PutBlob(data)
	if err != nil {
		t.Fatal(err)
	}
	srv := newHost(t, func(cfg *Config) { cfg.Blobs = StoreBlobs(src) })
	cl := newHost(t, nil)
	connect(t, cl, srv)
	n, err := cl.FetchBlob(context.Background(), c, []peer.ID{srv.ID()}, dst, protocol.MaxBlobSize)
	if err != nil || n != int64(len(data)) {
		t.Fatal(n, err)
	}
	got, err := dst.GetBlob(c)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("stored blob differs: %v", err)
	}
	// A lying server: the real store refuses the bytes and keeps nothing.
	liar := newMemStore()
	other := protocol.BlobCID(randBytes(t, 100))
	liar.lie(t, other, 2<<20)
	bad := newHost(t, func(cfg *Config) { cfg.Blobs = liar })
	connect(t, cl, bad)
	if _, err := cl.FetchBlob(context.Background(), other, []peer.ID{bad.ID()}, dst, protocol.MaxBlobSize); !errors.Is(err, protocol.ErrCIDMismatch) {
		t.Fatalf("want mismatch, got %v", err)
	}
	if _, ok, _ := dst.HasBlob(other); ok {
		t.Fatal("wrong bytes stored")
	}
}
