package p2p

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// Reachability statuses.
const (
	ReachPublic  = "public"  // peers can dial the host
	ReachPrivate = "private" // behind NAT or a firewall: peers cannot dial it
	ReachUnknown = "unknown" // not determined yet (no AutoNAT server answered)
)

// Inbound paths: how peers reach the host.
const (
	InboundDirect  = "direct"  // by dialling one of its addresses
	InboundRelayed = "relayed" // through a relay it holds a reservation on
	InboundNone    = "none"    // private and no relay reservation (yet)
	InboundUnknown = "unknown"
)

// Reachability is how other peers can reach the host, as far as it knows
// (AutoNAT v1 and v2, identify's observed addresses, relay reservations).
type Reachability struct {
	// Status is ReachPublic, ReachPrivate or ReachUnknown.
	Status string `json:"status"`
	// Inbound is InboundDirect, InboundRelayed, InboundNone or
	// InboundUnknown.
	Inbound string `json:"inbound"`
	// Public are the host's public addresses: listen addresses on public
	// IPs, and addresses peers observed (identify) often enough.
	Public []string `json:"public,omitempty"`
	// Reachable and Unreachable are the public addresses AutoNAT v2
	// confirmed dialable or not.
	Reachable   []string `json:"reachable,omitempty"`
	Unreachable []string `json:"unreachable,omitempty"`
	// Relays are the relayed addresses the host advertises (a reservation
	// is held on each relay).
	Relays []string `json:"relays,omitempty"`
	// AutoNAT is AutoNAT v1's verdict (ReachPublic, ReachPrivate,
	// ReachUnknown).
	AutoNAT string `json:"autonat"`
	// Since is when Status or Inbound last changed.
	Since time.Time `json:"since"`
}

// Path is how a connection to a peer goes.
type Path string

// Paths.
const (
	PathNone        Path = "none"         // not connected
	PathDirect      Path = "direct"       // a direct connection (dialled, or dialled back by a peer behind NAT)
	PathHolePunched Path = "hole-punched" // a direct connection opened by hole punching (DCUtR)
	PathRelayed     Path = "relayed"      // only through a relay, within its limits
)

// reach tracks the host's reachability and hole-punch outcomes.
type reach struct {
	mu       sync.Mutex
	v1       network.Reachability
	v2       event.EvtHostReachableAddrsChanged
	cur      Reachability
	watchers []func(Reachability)
	punched  map[peer.ID]bool // direct connection opened by a hole punch
	paths    map[peer.ID]Path // last blob path logged per peer
}

func reachString(r network.Reachability) string {
	switch r {
	case network.ReachabilityPublic:
		return ReachPublic
	case network.ReachabilityPrivate:
		return ReachPrivate
	}
	return ReachUnknown
}

// Reachability returns the host's current reachability.
func (h *Host) Reachability() Reachability {
	h.reach.mu.Lock()
	defer h.reach.mu.Unlock()
	r := h.reach.cur
	r.Public = slices.Clone(r.Public)
	r.Reachable = slices.Clone(r.Reachable)
	r.Unreachable = slices.Clone(r.Unreachable)
	r.Relays = slices.Clone(r.Relays)
	return r
}

// OnReachability calls f (from one goroutine, in order) each time the
// host's reachability changes.
func (h *Host) OnReachability(f func(Reachability)) {
	h.reach.mu.Lock()
	h.reach.watchers = append(h.reach.watchers, f)
	h.reach.mu.Unlock()
}

// PathTo says how the host is connected to p now: PathHolePunched or
// PathDirect over a direct connection, PathRelayed when every connection
// goes through a relay, PathNone when not connected.
func (h *Host) PathTo(p peer.ID) Path {
	conns := h.h.Network().ConnsToPeer(p)
	if len(conns) == 0 {
		return PathNone
	}
	for _, c := range conns {
		if !c.Stat().Limited && !isRelayed(c.RemoteMultiaddr()) {
			h.reach.mu.Lock()
			punched := h.reach.punched[p]
			h.reach.mu.Unlock()
			if punched {
				return PathHolePunched
			}
			return PathDirect
		}
	}
	return PathRelayed
}

// pathOf is the path one connection takes.
func (h *Host) pathOf(c network.Conn) Path {
	if c.Stat().Limited || isRelayed(c.RemoteMultiaddr()) {
		return PathRelayed
	}
	h.reach.mu.Lock()
	defer h.reach.mu.Unlock()
	if h.reach.punched[c.RemotePeer()] {
		return PathHolePunched
	}
	return PathDirect
}

// notePath logs the path blobs take to or from p when it changes.
func (h *Host) notePath(p peer.ID, path Path, what string) {
	h.reach.mu.Lock()
	prev := h.reach.paths[p]
	if prev != path {
		h.reach.paths[p] = path
	}
	h.reach.mu.Unlock()
	if prev != path {
		h.log.Info("blob path", "with", p, "path", string(path), "for", what)
	}
}

// NATPending reports whether AutoNAT's verdict is still out while the
// host looks to be behind NAT: it reaches a peer on a public address from
// a private one. (On loopback or a LAN nothing is public: never pending.)
func (h *Host) NATPending() bool {
	if h.Reachability().Status != ReachUnknown {
		return false
	}
	for _, c := range h.h.Network().Conns() {
		if c.Stat().Limited {
			continue
		}
		if manet.IsPublicAddr(c.RemoteMultiaddr()) && !manet.IsPublicAddr(c.LocalMultiaddr()) {
			return true
		}
	}
	return false
}

// AddRelayedAddrs remembers, for ttl, that p may be reached through each
// of Config.Relays: a peer behind NAT holds a reservation there, and the
// addresses it announced may predate it. The dialler tries p's direct
// addresses first.
func (h *Host) AddRelayedAddrs(p peer.ID, ttl time.Duration) {
	var addrs []ma.Multiaddr
	for _, r := range h.cfg.Relays {
		if r.ID == p || r.ID == h.id {
			continue
		}
		circuit, err := ma.NewMultiaddr("/p2p/" + r.ID.String() + "/p2p-circuit")
		if err != nil {
			continue
		}
		for _, a := range r.Addrs {
			addrs = append(addrs, a.Encapsulate(circuit))
		}
	}
	if len(addrs) > 0 {
		h.h.Peerstore().AddAddrs(p, addrs, ttl)
	}
}

func isRelayed(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_CIRCUIT)
	return err == nil
}

// watchReachability follows libp2p's reachability events until ctx ends.
func (h *Host) watchReachability(ctx context.Context) {
	sub, err := h.h.EventBus().Subscribe([]any{
		new(event.EvtLocalReachabilityChanged),
		new(event.EvtHostReachableAddrsChanged),
		new(event.EvtLocalAddressesUpdated),
	})
	if err != nil {
		h.log.Warn("reachability events unavailable", "err", err)
		return
	}
	defer sub.Close()
	h.updateReach()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-sub.Out():
			if !ok {
				return
			}
			h.reach.mu.Lock()
			switch e := e.(type) {
			case event.EvtLocalReachabilityChanged:
				h.reach.v1 = e.Reachability
			case event.EvtHostReachableAddrsChanged:
				h.reach.v2 = e
			}
			h.reach.mu.Unlock()
			h.updateReach()
		}
	}
}

// updateReach recomputes the summary and, when it changed, logs it and
// tells the watchers.
func (h *Host) updateReach() {
	var public []ma.Multiaddr
	if aa, ok := h.h.(interface{ AllAddrs() []ma.Multiaddr }); ok {
		for _, a := range aa.AllAddrs() {
			if manet.IsPublicAddr(a) && !isRelayed(a) {
				public = append(public, a)
			}
		}
	}
	var relays []string
	for _, a := range h.h.Addrs() {
		if isRelayed(a) {
			relays = append(relays, a.String())
		}
	}
	slices.Sort(relays)

	h.reach.mu.Lock()
	v1, v2 := h.reach.v1, h.reach.v2
	r := Reachability{
		AutoNAT:     reachString(v1),
		Public:      strs(public),
		Reachable:   strs(v2.Reachable),
		Unreachable: strs(v2.Unreachable),
		Relays:      relays,
	}
	// AutoNAT v2 tests each address (and needs two more confirmations
	// than refutations); its verdict wins over v1's single dial-back.
	switch {
	case len(v2.Reachable) > 0:
		r.Status = ReachPublic
	case len(v2.Unreachable) > 0 && len(v2.Unknown) == 0:
		r.Status = ReachPrivate
	default:
		r.Status = reachString(v1)
	}
	switch {
	case r.Status == ReachPublic:
		r.Inbound = InboundDirect
	case len(relays) > 0:
		r.Inbound = InboundRelayed
	case r.Status == ReachPrivate:
		r.Inbound = InboundNone
	default:
		r.Inbound = InboundUnknown
	}
	prev := h.reach.cur
	r.Since = prev.Since
	if r.Status != prev.Status || r.Inbound != prev.Inbound {
		r.Since = h.now()
	}
	changed := r.Status != prev.Status || r.Inbound != prev.Inbound ||
		!slices.Equal(r.Relays, prev.Relays) || !slices.Equal(r.Reachable, prev.Reachable) ||
		!slices.Equal(r.Public, prev.Public)
	h.reach.cur = r
	watchers := slices.Clone(h.reach.watchers)
	h.reach.mu.Unlock()
	if !changed {
		return
	}
	h.log.Info("reachability", "status", r.Status, "inbound", r.Inbound, "autonat", r.AutoNAT,
		"public", r.Public, "reachable", r.Reachable, "unreachable", r.Unreachable, "relays", r.Relays)
	for _, f := range watchers {
		f(h.Reachability())
	}
}

func strs(as []ma.Multiaddr) []string {
	out := make([]string, 0, len(as))
	for _, a := range as {
		out = append(out, a.String())
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// punchTracer records hole punching outcomes (libp2p's DCUtR service
// reports them here) and logs them.
type punchTracer struct{ h *Host }

func (t punchTracer) Trace(e *holepunch.Event) {
	h := t.h
	switch ev := e.Evt.(type) {
	case *holepunch.DirectDialEvt:
		if ev.Success {
			h.log.Info("direct connection to a peer that came through a relay (it is reachable)", "peer", e.Remote, "took", ev.EllapsedTime)
		} else {
			h.log.Debug("direct dial to a peer that came through a relay failed; hole punching", "peer", e.Remote, "err", ev.Error)
		}
	case *holepunch.EndHolePunchEvt:
		if ev.Success {
			h.reach.mu.Lock()
			h.reach.punched[e.Remote] = true
			h.reach.mu.Unlock()
			h.log.Info("hole punch succeeded: direct connection", "peer", e.Remote, "took", ev.EllapsedTime)
		} else {
			h.log.Info("hole punch attempt failed", "peer", e.Remote, "took", ev.EllapsedTime, "err", ev.Error)
		}
	case *holepunch.ProtocolErrorEvt:
		h.log.Debug("hole punch not possible", "peer", e.Remote, "err", ev.Error)
	}
}

var _ holepunch.EventTracer = punchTracer{}
