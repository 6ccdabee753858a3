package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/aspen-market/aspen/node/p2p"
	"github.com/aspen-market/aspen/protocol"
	"github.com/aspen-market/aspen/sandbox"
	"github.com/aspen-market/aspen/store"
)

// Node is a running Aspen peer.
type Node struct {
	cfg   Config
	log   *slog.Logger
	key   crypto.PrivKey
	id    peer.ID
	store *store.Store
	host  *p2p.Host
	sb    *sandbox.Sandbox
	token string
	// metricsToken opens /metrics only.
	metricsToken string

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	api     *http.Server
	apiAddr string

	metrics *metrics

	w *worker   // nil unless RoleWorker
	c *consumer // nil unless RoleConsumer

	tickets ticketCache // verified blob tickets (blobauth.go)
	seq     *gossipSeq  // offer and bid Seq (seq.go)

	offersMu sync.Mutex
	offers   map[peer.ID]offerSeen // at most maxOffers
}

type offerSeen struct {
	Offer  protocol.Offer
	Rating *protocol.Rating
	Seen   time.Time
}

// Paths inside a data directory.
const (
	KeyFile   = "identity.key"
	TokenFile = "api.token"
	// MetricsTokenFile holds a read-only token that opens /metrics only
	// (for Prometheus' credentials_file); the API token opens it too.
	MetricsTokenFile = "metrics.token"
	AddrFile         = "api.addr"
	StoreDir         = "store"
	CacheDir         = "wasm-cache"
)

// New opens the node's data directory (creating the identity key and API
// token on first use) and builds its parts. Start brings it online.
func New(cfg Config) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("node: data dir: %w", err)
	}
	key, err := p2p.LoadOrCreateKey(filepath.Join(cfg.DataDir, KeyFile))
	if err != nil {
		return nil, fmt.Errorf("node: identity: %w", err)
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, err
	}
	token, err := LoadOrCreateToken(filepath.Join(cfg.DataDir, TokenFile))
	if err != nil {
		return nil, err
	}
	mtoken, err := LoadOrCreateToken(filepath.Join(cfg.DataDir, MetricsTokenFile))
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: cfg.Logger.With("node", shortID(id)), key: key, id: id, token: token, metricsToken: mtoken,
		offers: map[peer.ID]offerSeen{}}

	scfg := store.DefaultConfig()
	scfg.Dir = filepath.Join(cfg.DataDir, StoreDir)
	scfg.Logger = cfg.Logger
	if n.store, err = store.Open(scfg); err != nil {
		return nil, fmt.Errorf("node: store: %w", err)
	}
	if n.seq, err = loadGossipSeq(n.store, cfg.Now); err != nil {
		n.store.Close()
		return nil, err
	}
	sbc := cfg.Sandbox
	if sbc.CacheDir == "" {
		sbc.CacheDir = filepath.Join(cfg.DataDir, CacheDir)
	}
	if !cfg.Role.Has(RoleWorker) {
		sbc.Slots = 1
	} else if sbc.Slots < cfg.Slots {
		sbc.Slots = cfg.Slots
	}
	sbc.Logger = cfg.Logger
	if n.sb, err = sandbox.New(sbc); err != nil {
		n.store.Close()
		return nil, fmt.Errorf("node: sandbox: %w", err)
	}
	pcfg := p2p.DefaultConfig()
	pcfg.Key = key
	pcfg.ListenAddrs = cfg.Listen
	for _, b := range cfg.Bootstrap {
		ai, err := p2p.ParseAddrInfo(b)
		if err != nil {
			n.store.Close()
			n.sb.Close()
			return nil, fmt.Errorf("node: bootstrap %q: %w", b, err)
		}
		pcfg.Bootstrap = append(pcfg.Bootstrap, ai)
	}
	pcfg.Pinned = []peer.AddrInfo{cfg.Verifier}
	if len(cfg.Verifier.Addrs) > 0 {
		pcfg.Relays = append(pcfg.Relays, cfg.Verifier)
	}
	for _, r := range cfg.Relays {
		ai, err := p2p.ParseAddrInfo(r)
		if err == nil && len(ai.Addrs) == 0 {
			err = fmt.Errorf("%w: no address", p2p.ErrBadAddr)
		}
		if err != nil {
			n.store.Close()
			n.sb.Close()
			return nil, fmt.Errorf("node: relay %q: %w", r, err)
		}
		pcfg.Relays = append(pcfg.Relays, ai)
	}
	// Gossip admits only offers the pinned verifier rated.
	pcfg.RatingSigner = cfg.Verifier.ID
	pcfg.Blobs = blobStore{n.store}
	pcfg.BlobAuth = n.blobAllowed
	pcfg.Logger = cfg.Logger
	if n.host, err = p2p.New(pcfg); err != nil {
		n.sb.Close()
		n.store.Close()
		return nil, fmt.Errorf("node: host: %w", err)
	}
	if cfg.Role.Has(RoleWorker) {
		n.w = newWorker(n)
	}
	n.metrics = newMetrics(n)
	if cfg.Role.Has(RoleConsumer) {
		n.c = newConsumer(n)
	}
	return n, nil
}

// Start brings the node online: host, gossip, handlers, worker and
// consumer loops, the local API. It returns once everything listens.
func (n *Node) Start(ctx context.Context) error {
	n.ctx, n.cancel = context.WithCancel(context.Background())
	if err := n.sb.Start(n.ctx); err != nil {
		return fmt.Errorf("node: start sandbox: %w", err)
	}
	if err := n.host.Start(n.ctx); err != nil {
		return fmt.Errorf("node: start host: %w", err)
	}
	// Bids are relayed (the verifier matches them) but not kept: nothing
	// here reads them.
	n.host.OnOffer(n.onOffer)
	if len(n.cfg.Verifier.Addrs) > 0 {
		cctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
		err := n.host.Connect(cctx, n.cfg.Verifier)
		cancel()
		if err != nil {
			n.log.Warn("verifier not reachable yet; will retry", "err", err)
		}
	}
	if n.c != nil {
		if err := n.c.start(); err != nil {
			return err
		}
	}
	if n.w != nil {
		if err := n.w.start(); err != nil {
			return err
		}
	}
	if n.cfg.APIAddr != "" {
		if err := n.startAPI(); err != nil {
			return err
		}
	}
	n.log.Info("node started", "peer", n.id.String(), "role", n.cfg.Role.String(), "api", n.apiAddr)
	return nil
}

// Close stops the node: cancels its loops, waits for them, and closes the
// API, host, sandbox and store in that order. It is safe to call twice.
func (n *Node) Close() error {
	var err error
	n.once.Do(func() {
		if n.cancel != nil {
			n.cancel()
		}
		if n.api != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = n.api.Shutdown(sctx)
			cancel()
		}
		n.wg.Wait()
		err = n.host.Close()
		if e := n.sb.Close(); err == nil {
			err = e
		}
		if e := n.store.Close(); err == nil {
			err = e
		}
	})
	return err
}

// ID is the node's peer ID.
func (n *Node) ID() peer.ID { return n.id }

// Addrs are the node's full libp2p multiaddrs.
func (n *Node) Addrs() []ma.Multiaddr { return n.host.Addrs() }

// APIAddr is the address the local API listens on ("" when disabled).
func (n *Node) APIAddr() string { return n.apiAddr }

// Token is the API bearer token.
func (n *Node) Token() string { return n.token }

// MetricsToken is the read-only bearer token of /metrics.
func (n *Node) MetricsToken() string { return n.metricsToken }

// StoreStats returns the counters of the node's store: durable writes,
// group commits and fsync rounds (exported as metrics).
func (n *Node) StoreStats() store.Stats { return n.store.Stats() }

// Role is the node's role.
func (n *Node) Role() Role { return n.cfg.Role }

func (n *Node) now() time.Time { return n.cfg.Now() }

func (n *Node) go_(f func()) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
}

// request sends a sealed request to the verifier and waits for its reply.
func (n *Node) requestVerifier(ctx context.Context, proto string, req, resp protocol.Message) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	err := n.host.Request(ctx, n.cfg.Verifier.ID, proto, req, resp)
	// A refusal arrives as a *p2p.RemoteError; callers that asked for an
	// Ack get it as a refused Ack, so they can act on its code.
	var re *p2p.RemoteError
	if ack, ok := resp.(*protocol.Ack); ok && errors.As(err, &re) {
		*ack = protocol.Ack{Code: re.Code, Error: re.Message}
		if ack.Code == protocol.AckOK {
			ack.Code = protocol.AckInternal
		}
		return nil
	}
	return err
}

// maxOffers bounds the offers a node keeps (one per worker, the latest).
// Only offers with a rating from the pinned verifier get here (gossip
// admission), so this is a bound on rated workers seen, not on keys.
const maxOffers = 4096

func (n *Node) onOffer(from peer.ID, o *protocol.Offer, _ []byte) {
	var r *protocol.Rating
	if len(o.Rating) > 0 {
		// A worker republishes its offer with the same sealed rating until
		// the verifier renews it: the signature is checked once per rating,
		// not once per offer.
		n.offersMu.Lock()
		prev, ok := n.offers[o.Worker]
		n.offersMu.Unlock()
		if ok && prev.Rating != nil && bytes.Equal(prev.Offer.Rating, o.Rating) {
			r = prev.Rating
		} else {
			var rt protocol.Rating
			if signer, err := protocol.OpenAs(o.Rating, &rt); err == nil && signer == n.cfg.Verifier.ID && rt.Worker == o.Worker {
				r = &rt
			}
		}
	}
	if r == nil {
		return // gossip admission checked it; a second look disagrees
	}
	now := n.now()
	n.offersMu.Lock()
	defer n.offersMu.Unlock()
	if _, ok := n.offers[o.Worker]; !ok && len(n.offers) >= maxOffers {
		n.evictOfferLocked(now.UnixMilli())
	}
	n.offers[o.Worker] = offerSeen{Offer: *o, Rating: r, Seen: now}
}

// evictOfferLocked makes room in a full offer table: expired offers go,
// or else the one that expires first.
func (n *Node) evictOfferLocked(nowMs int64) {
	var first peer.ID
	var firstExp int64
	for w, o := range n.offers {
		if o.Offer.Expires < nowMs {
			delete(n.offers, w)
			continue
		}
		if first == "" || o.Offer.Expires < firstExp {
			first, firstExp = w, o.Offer.Expires
		}
	}
	if len(n.offers) >= maxOffers {
		delete(n.offers, first)
	}
}

// localAddrs returns the node's multiaddrs as strings (for messages).
func (n *Node) localAddrs() []string {
	var out []string
	for _, a := range n.host.AddrInfo().Addrs {
		out = append(out, a.String())
		if len(out) == protocol.MaxAddrs {
			break
		}
	}
	return out
}

func shortID(p peer.ID) string {
	s := p.String()
	if len(s) > 8 {
		return s[len(s)-8:]
	}
	return s
}

// blobStore adapts the store to what the blob server reads.
type blobStore struct{ *store.Store }

func (b blobStore) ReadBlob(c cid.Cid) (p2p.BlobReader, error) { return b.OpenBlob(c) }

func listen(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }
