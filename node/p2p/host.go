package p2p

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/host/autorelay"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
)

// pinTag is the connection-manager protection tag of pinned peers.
const pinTag = "aspen-pinned"

// Host is an Aspen peer on the network: a libp2p host with Aspen's gossip
// topics, blob protocol and request/response helpers. Create it with New,
// call Start to subscribe and connect, and Close when done. Its methods are
// safe for concurrent use.
type Host struct {
	cfg Config
	log *slog.Logger
	key crypto.PrivKey
	id  peer.ID
	h   host.Host
	now func() time.Time

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc

	// goroutine tracking: track() refuses once closing.
	mu      sync.Mutex
	closing bool
	wg      sync.WaitGroup

	startOnce sync.Once
	closeOnce sync.Once
	closeErr  error
	runCancel context.CancelFunc

	gossip
	blobs  blobServer
	fetchQ chan struct{} // FetchBlob concurrency
	pool   streamPool

	pinned       map[peer.ID]bool
	dialFailures atomic.Int64  // failed maintenance dials, for tests
	wake         chan struct{} // nudges the connection maintainer
	notifiee     *network.NotifyBundle
	handlerMu    sync.Mutex
	handlers     map[string]struct{}

	reach  reach
	relay  io.Closer // the relay service, when offered
	budget relayBudget
}

// New builds the host from cfg: it starts listening, joins the gossip
// topics (with their validators) and serves blobs if cfg.Blobs is set.
// Nothing is delivered to OnOffer/OnBid handlers and no peer is dialled
// until Start.
func New(cfg Config) (*Host, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	id, err := peer.IDFromPrivateKey(cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("%w: key: %v", ErrInvalidConfig, err)
	}
	hs := &Host{
		cfg:      cfg,
		log:      log.With("peer", id.String()),
		key:      cfg.Key,
		id:       id,
		now:      cfg.Now,
		fetchQ:   make(chan struct{}, cfg.MaxFetches),
		pinned:   make(map[peer.ID]bool),
		wake:     make(chan struct{}, 1),
		handlers: make(map[string]struct{}),
	}
	hs.reach.punched = make(map[peer.ID]bool)
	hs.reach.paths = make(map[peer.ID]Path)
	hs.budget.used = make(map[network.Conn]int64)
	if cfg.OnReachability != nil {
		hs.reach.watchers = append(hs.reach.watchers, cfg.OnReachability)
	}
	if hs.now == nil {
		hs.now = time.Now
	}
	hs.ctx, hs.cancel = context.WithCancel(context.Background())
	hs.pool.init(cfg.MaxIdleStreams, cfg.StreamIdleTimeout/2)

	if cfg.Host != nil {
		hs.h = cfg.Host
	} else {
		h, err := buildHost(&cfg, punchTracer{hs})
		if err != nil {
			hs.cancel()
			return nil, err
		}
		hs.h = h
	}
	for _, pi := range cfg.Pinned {
		hs.pinned[pi.ID] = true
		hs.h.Peerstore().AddAddrs(pi.ID, pi.Addrs, peerstore.PermanentAddrTTL)
		hs.h.ConnManager().Protect(pi.ID, pinTag)
	}
	for _, pi := range cfg.Bootstrap {
		hs.h.Peerstore().AddAddrs(pi.ID, pi.Addrs, peerstore.PermanentAddrTTL)
	}
	hs.notifiee = &network.NotifyBundle{
		DisconnectedF: func(_ network.Network, c network.Conn) {
			hs.budget.forget(c)
			p := c.RemotePeer()
			if hs.h.Network().Connectedness(p) != network.Connected {
				hs.reach.mu.Lock()
				delete(hs.reach.punched, p)
				delete(hs.reach.paths, p)
				hs.reach.mu.Unlock()
			}
			if hs.pinned[p] || len(hs.h.Network().Peers()) == 0 {
				hs.nudge()
			}
		},
	}
	hs.h.Network().Notify(hs.notifiee)
	if cfg.RelayService != nil {
		r, err := startRelay(hs.h, *cfg.RelayService)
		if err != nil {
			hs.shutdown()
			return nil, err
		}
		hs.relay = r
		hs.log.Info("offering a relay service", "max_duration", cfg.RelayService.Duration, "max_bytes", cfg.RelayService.Data,
			"max_reservations", cfg.RelayService.MaxReservations)
	}
	hs.reach.cur = Reachability{Status: ReachUnknown, Inbound: InboundUnknown, AutoNAT: ReachUnknown, Since: hs.now()}
	hs.goTracked(func() { hs.watchReachability(hs.ctx) })

	if err := hs.initGossip(); err != nil {
		hs.shutdown()
		return nil, err
	}
	if cfg.Blobs != nil {
		hs.blobs.init(cfg.MaxBlobStreams)
		hs.h.SetStreamHandler(ProtoBlobID, hs.serveBlob)
	}
	hs.log.Info("p2p host ready", "addrs", hs.Addrs())
	return hs, nil
}

func buildHost(cfg *Config, tracer holepunch.EventTracer) (host.Host, error) {
	rmOpts := []rcmgr.Option{}
	if cfg.Metrics == nil {
		rmOpts = append(rmOpts, rcmgr.WithMetricsDisabled())
	}
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(Limits(cfg.MaxMemory, cfg.MaxFD)), rmOpts...)
	if err != nil {
		return nil, fmt.Errorf("p2p: resource manager: %w", err)
	}
	cm, err := connmgr.NewConnManager(cfg.ConnLow, cfg.ConnHigh, connmgr.WithGracePeriod(cfg.ConnGrace))
	if err != nil {
		rm.Close()
		return nil, fmt.Errorf("%w: connection manager: %v", ErrInvalidConfig, err)
	}
	opts := []libp2p.Option{
		libp2p.Identity(cfg.Key),
		libp2p.ListenAddrStrings(cfg.ListenAddrs...),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		// TLS first: AES-GCM with hardware support moves blobs faster than
		// Noise's ChaCha20 (measured: ~20%); both are offered.
		libp2p.Security(libp2ptls.ID, libp2ptls.New),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamuxTransport()),
		libp2p.DialRanker(tcpFirstRanker),
		libp2p.ResourceManager(rm),
		libp2p.ConnectionManager(cm),
		libp2p.WithDialTimeout(cfg.DialTimeout),
		// NAT traversal: AutoNAT v2 tests each public address; the relay
		// transport (a default) dials and accepts relayed connections;
		// DCUtR turns them into direct ones where the NATs allow.
		libp2p.EnableAutoNATv2(),
	}
	if cfg.Metrics != nil {
		opts = append(opts, libp2p.PrometheusRegisterer(cfg.Metrics),
			libp2p.EnableHolePunching(holepunch.WithMetricsAndEventTracer(
				holepunch.NewMetricsTracer(holepunch.WithRegisterer(cfg.Metrics)), tracer)))
	} else {
		opts = append(opts, libp2p.DisableMetrics(), libp2p.EnableHolePunching(holepunch.WithTracer(tracer)))
	}
	if cfg.NATService {
		opts = append(opts, libp2p.EnableNATService())
	}
	switch cfg.ForceReachability {
	case network.ReachabilityPublic:
		opts = append(opts, libp2p.ForceReachabilityPublic())
	case network.ReachabilityPrivate:
		opts = append(opts, libp2p.ForceReachabilityPrivate())
	}
	if len(cfg.Relays) > 0 {
		opts = append(opts, libp2p.EnableAutoRelayWithStaticRelays(cfg.Relays,
			// Reserve as soon as AutoNAT says private, and retry a relay
			// that refused within the reconnect bound, not libp2p's hour.
			autorelay.WithBootDelay(0), autorelay.WithBackoff(max(cfg.ReconnectMax, 10*time.Second)),
			autorelay.WithMinInterval(max(cfg.ReconnectMin, time.Second))))
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		// libp2p closes what it built on failure, except the options'
		// own objects.
		cm.Close()
		rm.Close()
		return nil, fmt.Errorf("p2p: libp2p host: %w", err)
	}
	return h, nil
}

// Start subscribes to the gossip topics (delivering to the OnOffer/OnBid
// handlers) and starts connecting to bootstrap and pinned peers in the
// background. Background work stops when ctx is done or at Close. Calling
// it again does nothing.
func (h *Host) Start(ctx context.Context) error {
	if h.isClosing() {
		return ErrClosed
	}
	var err error
	h.startOnce.Do(func() {
		runCtx, cancel := context.WithCancel(ctx)
		stop := context.AfterFunc(h.ctx, cancel)
		h.mu.Lock()
		h.runCancel = func() { stop(); cancel() }
		h.mu.Unlock()
		if err = h.startGossip(runCtx); err != nil {
			return
		}
		h.goTracked(func() { h.maintain(runCtx) })
	})
	return err
}

// Close stops everything, closes the libp2p host and waits for the host's
// goroutines. It is safe to call more than once.
func (h *Host) Close() error {
	h.closeOnce.Do(func() { h.closeErr = h.shutdown() })
	return h.closeErr
}

func (h *Host) shutdown() error {
	h.mu.Lock()
	h.closing = true
	runCancel := h.runCancel
	h.mu.Unlock()
	if runCancel != nil {
		runCancel()
	}
	h.cancel() // stops pubsub's goroutines
	h.pool.closeAll()
	var err error
	if h.relay != nil {
		if e := h.relay.Close(); e != nil {
			err = fmt.Errorf("p2p: close relay service: %w", e)
		}
	}
	if h.h != nil {
		h.h.Network().StopNotify(h.notifiee)
		if e := h.h.Close(); e != nil {
			err = fmt.Errorf("p2p: close host: %w", e)
		}
	}
	h.wg.Wait()
	h.log.Info("p2p host closed")
	return err
}

// goTracked runs f in a goroutine Close waits for; it returns false (and
// does not run f) once the host is closing.
func (h *Host) goTracked(f func()) bool {
	if !h.track() {
		return false
	}
	go func() {
		defer h.wg.Done()
		f()
	}()
	return true
}

// track registers one running task with the close wait group.
func (h *Host) track() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing {
		return false
	}
	h.wg.Add(1)
	return true
}

func (h *Host) isClosing() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closing
}

// ID returns the host's peer ID.
func (h *Host) ID() peer.ID { return h.id }

// Key returns the host's private key (the one messages are sealed with).
func (h *Host) Key() crypto.PrivKey { return h.key }

// Libp2p returns the underlying libp2p host, for what this package does not
// wrap. Do not close it; Close the Host.
func (h *Host) Libp2p() host.Host { return h.h }

// Addrs returns the host's listen addresses as full multiaddrs ending in
// /p2p/<id>, ready to be given to other peers.
func (h *Host) Addrs() []ma.Multiaddr {
	addrs, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: h.id, Addrs: h.h.Addrs()})
	if err != nil {
		return nil
	}
	return addrs
}

// AddrInfo returns the host's ID and listen addresses.
func (h *Host) AddrInfo() peer.AddrInfo {
	return peer.AddrInfo{ID: h.id, Addrs: h.h.Addrs()}
}

// Connect dials pi (its addresses are remembered) and returns once a
// connection is up. Without a deadline on ctx, Config.DialTimeout applies.
func (h *Host) Connect(ctx context.Context, pi peer.AddrInfo) error {
	if h.isClosing() {
		return ErrClosed
	}
	if pi.ID == h.id {
		return fmt.Errorf("%w: cannot connect to self", ErrBadAddr)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.cfg.DialTimeout)
		defer cancel()
	}
	if err := h.h.Connect(ctx, pi); err != nil {
		return fmt.Errorf("p2p: connect %s: %w", pi.ID, err)
	}
	return nil
}

// Connected reports whether the host has a connection to p.
func (h *Host) Connected(p peer.ID) bool {
	return h.h.Network().Connectedness(p) == network.Connected
}

// Peers returns the peers the host is connected to.
func (h *Host) Peers() []peer.ID { return h.h.Network().Peers() }

func (h *Host) nudge() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// dialState is the backoff state of one maintained peer.
type dialState struct {
	pi        peer.AddrInfo
	pinned    bool
	connected bool // a bootstrap peer that was reached once
	backoff   time.Duration
	next      time.Time
	inflight  bool
}

// maintain keeps pinned peers connected and bootstrap peers dialled until
// reached once (and again whenever the host has no connection at all),
// with exponential backoff and jitter between attempts.
func (h *Host) maintain(ctx context.Context) {
	var states []*dialState
	for _, pi := range h.cfg.Pinned {
		states = append(states, &dialState{pi: pi, pinned: true, backoff: h.cfg.ReconnectMin})
	}
	for _, pi := range h.cfg.Bootstrap {
		if h.pinned[pi.ID] || pi.ID == h.id {
			continue
		}
		states = append(states, &dialState{pi: pi, backoff: h.cfg.ReconnectMin})
	}
	if len(states) == 0 {
		return
	}
	done := make(chan *dialResult, len(states))
	timer := time.NewTimer(0)
	defer timer.Stop()
	inflight := 0
	defer func() {
		for ; inflight > 0; inflight-- {
			<-done
		}
	}()
	for {
		now := time.Now()
		alone := len(h.h.Network().Peers()) == 0
		wait := 5 * time.Second
		for _, st := range states {
			if st.inflight {
				continue
			}
			want := (st.pinned || !st.connected || alone) && !h.Connected(st.pi.ID)
			if !want {
				continue
			}
			if now.Before(st.next) {
				wait = min(wait, st.next.Sub(now))
				continue
			}
			st.inflight = true
			inflight++
			go func(st *dialState) {
				// Our own backoff governs: skip the swarm's (5 s and up).
				err := h.Connect(network.WithForceDirectDial(ctx, "aspen: maintained peer"), st.pi)
				done <- &dialResult{st: st, err: err}
			}(st)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-h.wake:
		case <-timer.C:
		case r := <-done:
			inflight--
			st := r.st
			st.inflight = false
			if r.err == nil {
				st.connected = true
				st.backoff = h.cfg.ReconnectMin
				st.next = time.Time{}
				h.log.Info("connected", "to", st.pi.ID, "pinned", st.pinned)
				continue
			}
			if ctx.Err() != nil {
				return
			}
			h.dialFailures.Add(1)
			jitter := time.Duration(rand.Int64N(int64(st.backoff)/5 + 1))
			st.next = time.Now().Add(st.backoff + jitter)
			h.log.Warn("dial failed, will retry", "to", st.pi.ID, "pinned", st.pinned, "in", st.backoff+jitter, "err", r.err)
			st.backoff = min(2*st.backoff, h.cfg.ReconnectMax)
		}
	}
}

type dialResult struct {
	st  *dialState
	err error
}

// yamuxTransport is libp2p's yamux configuration with 256 KiB frames
// instead of 64 KiB: a quarter of the frames for bulk blob transfer
// (measured ~10% faster), while a frame still takes well under a
// millisecond to send, so request streams are not held up behind blobs.
func yamuxTransport() *yamux.Transport {
	c := *yamux.DefaultTransport
	c.MaxMessageSize = 256 << 10
	return &c
}

// quicAfterTCP delays QUIC dials behind TCP ones.
const quicAfterTCP = 250 * time.Millisecond

// tcpFirstRanker ranks dial addresses like libp2p's default, except that
// TCP is dialled first and QUIC quicAfterTCP later: on the machines Aspen
// runs on, TCP+TLS+yamux moves blobs 2-3 times faster than QUIC (measured
// on loopback), and blobs are most of the bytes. QUIC still connects when
// TCP does not.
func tcpFirstRanker(addrs []ma.Multiaddr) []network.AddrDelay {
	ranked := swarm.DefaultDialRanker(addrs)
	isTCP := func(a ma.Multiaddr) bool {
		tcp, relay := false, false
		ma.ForEach(a, func(c ma.Component) bool {
			switch c.Protocol().Code {
			case ma.P_TCP:
				tcp = true
			case ma.P_CIRCUIT, ma.P_WS, ma.P_WSS:
				relay = true
			}
			return true
		})
		return tcp && !relay
	}
	isQUIC := func(a ma.Multiaddr) bool {
		q, relay := false, false
		ma.ForEach(a, func(c ma.Component) bool {
			switch c.Protocol().Code {
			case ma.P_QUIC, ma.P_QUIC_V1:
				q = true
			case ma.P_CIRCUIT, ma.P_WEBTRANSPORT:
				relay = true
			}
			return true
		})
		return q && !relay
	}
	tcpMin := time.Duration(-1)
	for _, r := range ranked {
		if isTCP(r.Addr) && (tcpMin < 0 || r.Delay < tcpMin) {
			tcpMin = r.Delay
		}
	}
	if tcpMin < 0 {
		return ranked
	}
	for i := range ranked {
		switch {
		case isTCP(ranked[i].Addr):
			ranked[i].Delay -= tcpMin
		case isQUIC(ranked[i].Addr):
			ranked[i].Delay += quicAfterTCP
		}
	}
	sort.SliceStable(ranked, func(i, j int) bool { return ranked[i].Delay < ranked[j].Delay })
	return ranked
}
